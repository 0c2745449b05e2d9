"""A Keras model seen as the parity protocol sees it (imported where Keras is held): its layers
named by path, their weights bound to canonical names, and one eager pass that records the
layers' activations and the layout each one's axes have.

Names mirror torch's ``named_modules``: inside a functional or ``Sequential`` model a layer is
named by its name; inside a subclassed layer or model, by the attribute that holds it
(``blocks.0.conv`` for ``self.blocks = [Block(), ...]``), so nested sub-models and subclassed
models are named as their torch twins are.  A layer with a mapping (``parity.mappings``) is one
unit: its inner layers (an attention's projections, an LSTM's cell) are not named.

The recorder wraps each layer's ``call`` for one eager pass, the way torch's forward hooks
watch modules: it works the same for functional, ``Sequential`` and subclassed models.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np
import keras

from canon import layout
from canon.errors import TransferError
from parity.adapters import keras_mappings  # noqa: F401  (registers the stock layers' mappings)
from parity.mappings import LayerMapping, Slot, WeightRule, canonical_name, from_legacy, keras_mapping
from parity.protocol import input_key, layer_key

UNRESOLVED = "unresolved"


@dataclass
class Unit:
    """One named layer: ``mapping`` None for a container (named children) or an unmapped leaf."""

    path: str
    layer: Any
    mapping: LayerMapping | None
    children: list[str] = field(default_factory=list)

    @property
    def kind(self) -> str:
        return type(self.layer).__name__


def _graph(layer) -> bool:
    from keras.src.models.functional import Functional

    return isinstance(layer, (Functional, keras.Sequential))


def mapping_of(layer) -> LayerMapping | None:
    """A layer's mapping: its class's ``canonical_weights`` triples (zoo layers), else the registry."""
    declared = getattr(type(layer), "canonical_weights", None)
    if declared is not None:
        rules = tuple(from_legacy(*triple) for triple in declared)
        return LayerMapping(lambda _: rules, getattr(layer, "canonical_layout", "same_as_input"))
    found = keras_mapping(type(layer))
    declared_layout = getattr(layer, "canonical_layout", None)
    if declared_layout is not None:  # a class or instance attribute overrides the registered rule
        return LayerMapping(found.weights if found else free_variables, declared_layout,
                            found.call_order if found else None)
    return found


def _children(layer) -> list[tuple[str, Any]]:
    if _graph(layer):
        return [(child.name, child) for child in layer.layers if not isinstance(child, keras.layers.InputLayer)]
    named, seen = [], set()

    def add(name: str, value) -> None:
        if isinstance(value, keras.layers.Layer) and id(value) not in seen:
            seen.add(id(value))
            named.append((name, value))

    for attribute, value in vars(layer).items():
        if attribute.startswith("_"):
            continue
        if isinstance(value, (list, tuple)):
            for index, item in enumerate(value):
                add(f"{attribute}.{index}", item)
        elif isinstance(value, dict):
            for key, item in value.items():
                add(f"{attribute}.{key}", item)
        else:
            add(attribute, value)
    for child in getattr(layer, "_layers", ()):  # tracked, but held under a private name
        add(child.name, child)
    return named


def units(net) -> dict[str, Unit]:
    """Every named layer of ``net`` by path, parents before children, the model itself as ``""``."""
    found: dict[str, Unit] = {}

    def visit(layer, path: str) -> None:
        mapping = mapping_of(layer) if path else None
        unit = Unit(path, layer, mapping)
        found[path] = unit
        if mapping is None:
            for name, child in _children(layer):
                child_path = f"{path}.{name}" if path else name
                if child_path in found:
                    raise ValueError(f"two layers of the Keras model are named {child_path!r}; give them distinct names")
                unit.children.append(child_path)
                visit(child, child_path)

    visit(net, "")
    return found


def _own_variables(layer, children: Iterable[Any]) -> list[tuple[str, Any]]:
    """A container's free variables (``add_weight`` on the layer itself, torch's ``nn.Parameter``),
    by the attribute that holds each, else its name."""
    inner = {id(v) for child in children for v in child.weights}
    attributes = {id(value): name for name, value in vars(layer).items() if isinstance(value, keras.Variable)}
    return [(attributes.get(id(v), v.name), v) for v in layer.weights if id(v) not in inner]


def free_variables(layer, children: Iterable[Any] = ()) -> list[WeightRule]:
    """A layer's own variables as torch's ``nn.Parameter`` s of the same attribute name, unchanged."""
    return [WeightRule((name,), (name,), lambda a: (np.ascontiguousarray(a),), lambda v: (np.ascontiguousarray(v),))
            for name, _ in _own_variables(layer, children)]


def _variable(layer, name: str, children: Iterable[Any] = ()):
    """The variable a rule names: an attribute path, or (a free variable) its attribute or name."""
    found = _resolve(layer, name)
    if found is None:
        found = dict(_own_variables(layer, children)).get(name)
    return found


def _resolve(layer, attribute_path: str):
    value = layer
    for part in attribute_path.split("."):
        value = getattr(value, part, None)
        if value is None:
            return None
    return value


def slots(net) -> list[Slot]:
    """Every weight of ``net`` bound to its canonical name; each variable claimed exactly once."""
    bound: list[Slot] = []
    claimed: dict[int, str] = {}
    found = units(net)
    for unit in found.values():
        children = [found[c].layer for c in unit.children]
        rules = list(unit.mapping.weights(unit.layer)) if unit.mapping is not None else free_variables(unit.layer, children)
        for rule in rules:
            variables = tuple(_variable(unit.layer, name, children) for name in rule.variables)
            missing = [a for a, v in zip(rule.variables, variables) if v is None]
            if missing:
                raise TransferError(f"layer {unit.path!r} ({unit.kind}): its mapping names variables it does not have: {missing}")
            names = tuple(canonical_name(unit.path, suffix) for suffix in rule.canonical)
            for variable in variables:
                if id(variable) in claimed:
                    raise TransferError(f"the Keras variable {variable.path!r} is claimed twice: by {claimed[id(variable)]!r} "
                                    f"and {names}")
                claimed[id(variable)] = ", ".join(names)
            bound.append(Slot(unit.path, rule, names, variables))
    unclaimed = [v.path for v in net.weights if id(v) not in claimed]
    if unclaimed:
        owners = sorted({path for path, unit in found.items() if unit.mapping is not None or not unit.children
                         for v in unit.layer.weights if v.path in unclaimed})
        raise TransferError(
            f"Keras layer(s) {owners or ['?']} hold weights with no canonical mapping: {unclaimed[:6]}; map the layer "
            "class with parity.mappings.register_keras_layer(cls, weights=...) or give it a canonical_weights attribute "
            "(docs/byo.md)")
    return bound


def lossy_groups(bound: list[Slot]) -> list[list[str]]:
    """The canonical tensors a mapping adds together (torch's two RNN biases into Keras' one):
    torch -> Keras -> torch keeps their sum, not each one."""
    return [list(slot.names) for slot in bound if not slot.rule.exact]


def canonical_shapes(bound: list[Slot]) -> dict[str, tuple[int, ...]]:
    shapes = {}
    for slot in bound:
        empty = [np.zeros(tuple(v.shape), dtype=np.uint8) for v in slot.variables]
        for name, array in zip(slot.names, slot.rule.from_keras(*empty)):
            shapes[name] = tuple(array.shape)
    return shapes


def canonical_weights(bound: list[Slot]) -> dict[str, np.ndarray]:
    tensors = {}
    for slot in bound:
        values = [np.asarray(keras.ops.convert_to_numpy(v)) for v in slot.variables]
        tensors.update(zip(slot.names, slot.rule.from_keras(*values)))
    return tensors


def describe(found: dict[str, Unit], bound: list[Slot]) -> list[dict]:
    """The protocol's module list: every named layer, its kind, its own weights' canonical names."""
    weights: dict[str, list[str]] = {}
    for slot in bound:
        weights.setdefault(slot.layer, []).extend(slot.names)
    return [{"name": path, "kind": unit.kind, "weights": weights.get(path, []), "leaf": not unit.children,
             "config": _config(unit.layer)} for path, unit in found.items()]


def _config(layer) -> dict:
    try:
        config = layer.get_config()
    except Exception:  # a custom layer without get_config
        return {}
    return {k: v for k, v in config.items() if isinstance(v, (int, float, str, bool, list, tuple, type(None)))}


# -- one eager pass, recorded ------------------------------------------------------------

def flatten(value) -> list:
    """A layer's or model's output as a flat list of tensors (dicts by sorted key)."""
    if isinstance(value, dict):
        return [t for key in sorted(value) for t in flatten(value[key])]
    if isinstance(value, (list, tuple)):
        return [t for item in value for t in flatten(item)]
    return [value] if hasattr(value, "shape") else []


def _numpy(tensor) -> np.ndarray:
    return np.asarray(keras.ops.convert_to_numpy(tensor))


class Recorder:
    """Wraps the ``call`` of every named layer for one eager pass: records the layers in
    ``record`` (their first output, and their inputs with ``with_inputs``), and the layout of
    every layer's output (the conversion its kind rules, or the one of its input)."""

    def __init__(self, found: dict[str, Unit], input_conversions: list[str], record: Iterable[str] = (),
                 with_inputs: bool = False):
        self.found, self.record, self.with_inputs = found, set(record), with_inputs
        self.input_conversions = list(input_conversions)
        self.arrays: dict[str, np.ndarray] = {}
        self.order: list[str] = []
        self.conversions: dict[str, str] = {}  # layer -> its output's conversion
        self.input_layouts: dict[str, list[str]] = {}  # layer -> its inputs' conversions
        self.input_shapes: dict[str, list[tuple[int, ...]]] = {}  # layer -> its inputs' shapes (Keras layout)
        self.takes_list: dict[str, bool] = {}  # layer -> called with one list of its inputs
        self.output_conversions: list[str] = []
        self._produced: dict[int, str] = {}
        self._producers: dict[int, str] = {}
        self._inputs: list = []
        self.output_producers: list[str] = []  # the layer that made each model output
        self._alive: list = []  # keeps the tensors whose ids are keys above alive for the pass
        self._originals: list[tuple[Any, Any]] = []

    def __enter__(self):
        for path, unit in self.found.items():
            layer = unit.layer
            original = layer.call
            self._originals.append((layer, layer.__dict__.get("call")))
            layer.call = self._wrap(path, unit, original)
        return self

    def __exit__(self, *exc):
        for layer, previous in self._originals:
            if previous is None:
                del layer.call
            else:
                layer.call = previous
        self._alive.clear()
        return False

    def _model_input(self, tensor) -> str | None:
        """A model input the model converted on the way in (a new tensor of the same values)."""
        for given, conversion in self._inputs:
            if tuple(given.shape) == tuple(tensor.shape) and np.array_equal(_numpy(given), _numpy(tensor)):
                return conversion
        return None

    def _note(self, tensors: list, conversion: str, producer: str = "") -> None:
        for tensor in tensors:
            self._produced[id(tensor)] = conversion
            self._producers[id(tensor)] = producer
            self._alive.append(tensor)

    def _wrap(self, path: str, unit: Unit, original):
        def call(*args, **kwargs):
            inputs = flatten(list(args))
            if not path:  # the model itself: its inputs carry the declared layouts
                self._inputs = list(zip(inputs, self.input_conversions))
                for tensor, conversion in self._inputs:
                    self._note([tensor], conversion)
            result = original(*args, **kwargs)
            outputs = flatten(result)
            if not path:
                self.output_conversions = [self._produced.get(id(t), UNRESOLVED) for t in outputs]
                self.output_producers = [self._producers.get(id(t), "") for t in outputs]
                return result
            if path in self.order and path in self.record:
                raise RuntimeError(f"layer {path!r} ran twice in one forward pass; layer-wise comparison needs one "
                                   "layer per call (give the second use a layer of its own)")
            given = [self._produced.get(id(t)) or self._model_input(t) for t in inputs]
            conversion = self._rule(unit, inputs, outputs, given)
            self.conversions[path] = conversion
            self.input_layouts[path] = [g or UNRESOLVED for g in given]
            self.input_shapes[path] = [tuple(int(d) for d in t.shape) for t in inputs]
            # Keras' merge layers take one list (Add()([a, b])); attention takes separate tensors
            self.takes_list[path] = len(args) == 1 and isinstance(args[0], (list, tuple))
            self._note(outputs, conversion, path)
            self.order.append(path)
            if path in self.record and outputs:
                self.arrays[layer_key(path)] = _numpy(outputs[0])
                if self.with_inputs:
                    for index, tensor in enumerate(inputs):
                        self.arrays[input_key(path, index)] = _numpy(tensor)
            return result

        return call

    def _rule(self, unit: Unit, inputs: list, outputs: list, given: list) -> str:
        """The output's conversion: rank < 3 needs none; a mapped kind says; an element-wise
        layer keeps its input's; anything else is unresolved (an error if it is compared)."""
        if not outputs or len(outputs[0].shape) < 3:
            return layout.PLAIN
        if unit.mapping is None and unit.children:  # a container gives back what its layers made
            made = self._produced.get(id(outputs[0]))
            if made not in (None, UNRESOLVED):
                return made
        rule = unit.mapping.layout if unit.mapping is not None else None
        if rule in (layout.CHANNELS, layout.PLAIN):
            return rule
        known = next((g for g in given if g not in (None, UNRESOLVED)), None)
        if rule == "same_as_input":
            return known or UNRESOLVED
        if not unit.layer.weights and inputs and tuple(inputs[0].shape) == tuple(outputs[0].shape):
            return known or UNRESOLVED  # unmapped but shape-preserving and weightless: element-wise
        return UNRESOLVED


def unresolved_message(path: str, unit: Unit, shape) -> str:
    return (f"Keras layer {path!r} ({unit.kind}) gives a rank-{len(shape)} output {tuple(shape)} whose layout "
            "cannot be told (channels-last like a conv's, or the same axes as torch's): declare it with "
            f"parity.mappings.register_keras_layer({unit.kind}, layout='channels' or 'plain') or a class attribute "
            "canonical_layout (docs/byo.md)")


def to_keras_inputs(arrays: list[np.ndarray], conversions: list[str], dtype: str) -> list[np.ndarray]:
    """Canonical input arrays in Keras' layout; floating ones in the model's dtype."""
    converted = []
    for array, conversion in zip(arrays, conversions):
        array = layout.from_canonical(array, conversion)
        converted.append(array.astype(dtype) if np.issubdtype(array.dtype, np.floating) else array)
    return converted
