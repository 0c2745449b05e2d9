"""Weight mappings: which Keras variables hold which canonical (PyTorch ``state_dict``) tensors.

A Keras layer class maps to a :class:`LayerMapping`: a function that, given a built layer, lists
its :class:`WeightRule` s, and the rule for the layout of the layer's activations.  A rule ties
one or more canonical tensors to one or more of the layer's variables (torch's fused
``in_proj_weight`` is Keras' query, key and value kernels; torch's ``bias_ih`` and ``bias_hh`` are
one Keras LSTM bias), with the conversion each way.  Every transfer is audited: each canonical
tensor and each variable is used exactly once.

The built-in mappings cover Keras' stock layers (``parity.adapters.keras_mappings``).  For a layer
class of your own, call :func:`register_keras_layer` in the module that defines the class (or in
your Keras factory's module)::

    from parity.mappings import register_keras_layer, same

    register_keras_layer(MyScale, weights=lambda layer: [same("scale", "scale")], layout="same_as_input")

This module is framework-free: the conversions are NumPy, and a mapping reads a layer only
through its attributes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

# The activation layout rule of a layer kind: its output is "channels" (Keras channels-last,
# torch channels-first), "plain" (the same axes in both), or "same_as_input" (an element-wise
# layer keeps the layout of what it is given).
LAYER_LAYOUTS = ("channels", "plain", "same_as_input")

Arrays = Sequence[np.ndarray]


@dataclass(frozen=True)
class WeightRule:
    """``canonical`` tensor names (below the layer's canonical name) <-> ``variables`` (attribute
    paths on the layer: ``kernel``, ``cell.bias``, ``_query_dense.kernel``).

    ``to_keras(*canonical arrays) -> variable arrays`` and ``from_keras(*variable arrays) ->
    canonical arrays``.  ``gradient_from_keras`` carries the variables' gradients back: the
    adjoint of ``to_keras``, which is ``from_keras`` itself whenever ``to_keras`` only moves values
    (permutations, splits, concatenations); a rule that adds tensors (an LSTM's two torch biases
    into one) gives its own.  ``exact`` says whether canonical -> Keras -> canonical is bit-exact."""

    canonical: tuple[str, ...]
    variables: tuple[str, ...]
    to_keras: Callable[..., Arrays]
    from_keras: Callable[..., Arrays]
    gradient_from_keras: Callable[..., Arrays] | None = None
    exact: bool = True

    def gradients(self, *gradients: np.ndarray) -> Arrays:
        return (self.gradient_from_keras or self.from_keras)(*gradients)


@dataclass(frozen=True)
class LayerMapping:
    """A Keras layer kind's weights and activation layout.  ``call_order`` reorders the inputs a
    torch module was called with into the Keras layer's call order for the isolated check
    (``nn.MultiheadAttention(query, key, value)`` vs ``MultiHeadAttention(query, value, key)``)."""

    weights: Callable[[Any], Sequence[WeightRule]]
    layout: str = "same_as_input"
    call_order: tuple[int, ...] | None = None
    # called on each layer of a model built in float64 (the check that proves semantics), to
    # undo a framework's float32 constant inside the layer (Keras' attention scale on TF)
    prepare_float64: Callable[[Any], None] | None = None

    def __post_init__(self) -> None:
        if self.layout not in LAYER_LAYOUTS:
            raise ValueError(f"layout must be one of {LAYER_LAYOUTS}, got {self.layout!r}")


_KERAS_LAYERS: dict[type, LayerMapping] = {}


def register_keras_layer(layer_class: type, weights: Callable[[Any], Sequence[WeightRule]] | None = None,
                         layout: str = "same_as_input", call_order: tuple[int, ...] | None = None,
                         replace: bool = True, prepare_float64: Callable[[Any], None] | None = None) -> type:
    """Map ``layer_class`` (and its subclasses) for every transfer and comparison.  ``weights``:
    ``layer -> [WeightRule, ...]`` (omit for a layer without weights).  A later registration of
    the same class replaces the earlier one, so a user can override a built-in mapping.
    Answers the class.  ``replace=False`` keeps a mapping already registered (the built-ins use it,
    so a user's earlier registration of a stock class stands)."""
    if not replace and layer_class in _KERAS_LAYERS:
        return layer_class
    _KERAS_LAYERS[layer_class] = LayerMapping(weights or (lambda layer: ()), layout, call_order, prepare_float64)
    return layer_class


def keras_mapping(layer_class: type) -> LayerMapping | None:
    """The mapping of the nearest registered class in ``layer_class``'s MRO."""
    for cls in layer_class.__mro__:
        if cls in _KERAS_LAYERS:
            return _KERAS_LAYERS[cls]
    return None


def registered_keras_layers() -> dict[type, LayerMapping]:
    return dict(_KERAS_LAYERS)


# -- rules for the usual weight kinds ------------------------------------------------------

def _contiguous(array: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(array)


def same(canonical: str, variable: str) -> WeightRule:
    """The same tensor in both (biases, norms' scales, embeddings, free variables)."""
    return WeightRule((canonical,), (variable,), lambda a: (_contiguous(a),), lambda v: (_contiguous(v),))


def reshaped(canonical: str, variable: str, canonical_shape: tuple[int, ...], variable_shape: tuple[int, ...]) -> WeightRule:
    """The same values in another shape (a PReLU's alpha (1, 1, C) is torch's (C,))."""
    return WeightRule((canonical,), (variable,),
                      lambda a: (_contiguous(np.reshape(a, variable_shape)),),
                      lambda v: (_contiguous(np.reshape(v, canonical_shape)),))


def permuted(canonical: str, variable: str, to_keras_axes: tuple[int, ...]) -> WeightRule:
    """An axis permutation (a conv kernel OIHW <-> HWIO)."""
    back = tuple(int(i) for i in np.argsort(to_keras_axes))
    return WeightRule((canonical,), (variable,),
                      lambda a: (_contiguous(np.transpose(a, to_keras_axes)),),
                      lambda v: (_contiguous(np.transpose(v, back)),))


def conv_kernel(canonical: str, variable: str, spatial_rank: int) -> WeightRule:
    """torch (out, in/groups, *k) <-> Keras (*k, in/groups, out); a transposed conv's torch
    (in, out, *k) <-> Keras (*k, out, in) is the same permutation."""
    return permuted(canonical, variable, (*range(2, 2 + spatial_rank), 1, 0))


def dense_kernel(canonical: str, variable: str) -> WeightRule:
    """torch Linear (out, in) <-> Keras Dense (in, out), whatever the input's rank."""
    return permuted(canonical, variable, (1, 0))


def depthwise_rule(canonical: str, variable: str, variable_shape: tuple[int, ...]) -> WeightRule:
    """torch grouped conv (C*M, 1, *k) (groups=C) <-> Keras depthwise kernel (*k, C, M): torch's
    output channel c*M + m is input channel c's m-th filter, as in Keras."""
    *kernel, channels, multiplier = variable_shape
    rank = len(kernel)

    def to_keras(weight):
        if weight.shape[1] != 1:
            raise ValueError(f"a depthwise kernel has one input channel per group, got shape {weight.shape}")
        grouped = weight.reshape(channels, multiplier, *kernel)  # (C, M, *k)
        return (_contiguous(np.transpose(grouped, (*range(2, 2 + rank), 0, 1))),)

    def from_keras(kernel_array):
        grouped = np.transpose(kernel_array, (rank, rank + 1, *range(rank)))  # (C, M, *k)
        return (_contiguous(grouped.reshape(channels * multiplier, 1, *kernel)),)

    return WeightRule((canonical,), (variable,), to_keras, from_keras)


def split_rows(canonical: str, variables: tuple[str, ...], to_keras_each: Callable, from_keras_each: Callable) -> WeightRule:
    """One canonical tensor whose equal row blocks are several variables (torch's fused
    ``in_proj_weight`` = [q; k; v])."""
    parts = len(variables)

    def to_keras(fused):
        return tuple(to_keras_each(block) for block in np.split(fused, parts, axis=0))

    def from_keras(*arrays):
        return (_contiguous(np.concatenate([from_keras_each(a) for a in arrays], axis=0)),)

    return WeightRule((canonical,), variables, to_keras, from_keras)


def summed_bias(canonical: tuple[str, str], variable: str, reorder: Callable[[np.ndarray], np.ndarray] = _contiguous,
                restore: Callable[[np.ndarray], np.ndarray] = _contiguous) -> WeightRule:
    """torch's two recurrent biases ``bias_ih`` + ``bias_hh`` <-> one Keras bias.

    torch -> Keras adds them, which rounds once, so it is exact only up to that rounding (the
    cell adds the same terms in another order anyway); Keras -> torch puts the bias in
    ``bias_ih`` and zeros in ``bias_hh``, exactly.  The gradient of either torch bias is the
    gradient of the Keras bias (the adjoint of the sum)."""
    def to_keras(input_bias, hidden_bias):
        return (reorder(input_bias + hidden_bias),)

    def from_keras(bias):
        restored = restore(bias)
        return restored, np.zeros_like(restored)

    def gradients(gradient):
        restored = restore(gradient)
        return restored, restored.copy()

    return WeightRule(tuple(canonical), (variable,), to_keras, from_keras, gradients, exact=False)


def from_legacy(attribute: str, suffix: str, kind: str) -> WeightRule:
    """A ``canonical_weights = ((attribute, suffix, kind), ...)`` triple of a zoo layer, with kind
    a ``canon.layout.WEIGHT_LAYOUTS`` key."""
    from canon import layout

    return WeightRule((suffix,), (attribute,), lambda a: (layout.to_keras(kind, a),),
                      lambda v: (layout.from_keras(kind, v),))


@dataclass
class Slot:
    """One rule bound to one layer: the canonical names in full and the variables themselves."""

    layer: str
    rule: WeightRule
    names: tuple[str, ...]
    variables: tuple[Any, ...] = field(default_factory=tuple)

    @property
    def trainable(self) -> bool:
        return all(getattr(v, "trainable", True) for v in self.variables)


def canonical_name(layer_path: str, suffix: str) -> str:
    return f"{layer_path}.{suffix}" if layer_path else suffix
