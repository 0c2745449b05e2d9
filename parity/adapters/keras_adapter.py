"""Keras 3 side of the parity protocol on any backend (imported only in a Keras worker).

How a Keras model is named, bound to canonical weights and recorded is ``keras_model``'s; this
module drives it through the protocol with Keras alone: build, weights, forward passes and the
gradients pass.  What differs between backends is each backend adapter's: its settings, how it
differentiates (``differentiate``) and how it exports ONNX (``tf_adapter``, ``keras_jax_adapter``,
``keras_torch_adapter``).  Activations cross in the canonical (torch) layout: each array is
converted by the layout its layer kind rules (``parity.mappings``) or the case declares for a
model input.
"""

from __future__ import annotations

import os
import random

import numpy as np
import keras

from parity import protocol
from parity.adapters import common
from parity.adapters import keras_model as km
from parity.protocol import Adapter, grad_key, layer_key, load_arrays, output_key, save_arrays, state_key
from canon.files import atomic_write
from canon import layout
from canon.weights import WeightTransfer, load_canonical, save_canonical


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    keras.utils.set_random_seed(seed)  # Python, NumPy and the backend's seeds, and Keras' own generator


def keep_float64() -> None:
    """Keras' type promotion keeps float64 on this backend, as on TensorFlow.

    On JAX and torch Keras 3.15 maps every 64-bit float result to 32 bits ("aligned with JAX's
    default", x64 off): ``result_type("float64", "float64")`` is float32 there, and the ops that
    take their compute dtype from it cast a float64 tensor to float32, compute and (some) cast
    back: ``ops.mean`` on both (so GlobalAveragePooling), ``ops.tanh``/``sin``/``cos`` on JAX,
    ``ops.matmul``/``tensordot``/``maximum``/``minimum`` on torch (so Dense).  The backend rows
    compute float64 in float64 (JAX with x64, torch natively), so the map's float64 entry is set
    to float64, in this worker only, before any model is built (docs/pitfalls.md, entry 44)."""
    from keras.src.backend.common import dtypes

    mapping = getattr(dtypes, "BIT64_TO_BIT32_DTYPE", None)
    if isinstance(mapping, dict):
        mapping["float64"] = "float64"
    if keras.backend.result_type("float64", "float64") != "float64" or \
            keras.backend.result_type("float64", "float32") != "float64":
        raise RuntimeError(f"Keras {keras.__version__} on {keras.backend.backend()} promotes float64 to "
                           f"{keras.backend.result_type('float64', 'float64')}, and twinframe could not make it keep "
                           "float64 (keras.src.backend.common.dtypes.BIT64_TO_BIT32_DTYPE changed): a float64 "
                           "model would compute in float32 (docs/pitfalls.md, entry 44)")


def numpy(tensor) -> np.ndarray:
    """A backend tensor (or variable) as a NumPy array: torch's are detached, JAX's copied out."""
    return np.asarray(keras.ops.convert_to_numpy(tensor))


class _Built:
    """A model with what the protocol keeps beside it: its named layers, its weight slots, the
    conversion of each input, and the layouts one recorded pass found."""

    def __init__(self, net, dtype: str, input_conversions: list[str]):
        self.net, self.dtype = net, dtype
        self.units = km.units(net)
        self.slots = km.slots(net)
        self.input_conversions = input_conversions
        self.conversions: dict[str, str] = {}
        self.input_layouts: dict[str, list[str]] = {}
        self.input_shapes: dict[str, list[tuple[int, ...]]] = {}
        self.takes_list: dict[str, bool] = {}
        self.output_conversions: list[str] = []
        self.output_producers: list[str] = []

    def inputs(self, arrays: dict) -> list[np.ndarray]:
        return km.to_keras_inputs(protocol.model_inputs(arrays), self.input_conversions, self.dtype)

    def call(self, inputs: list, training: bool = False, record=(), with_inputs: bool = False) -> km.Recorder:
        recorder = km.Recorder(self.units, self.input_conversions, record, with_inputs)
        # tensors, not arrays: a model converts arrays itself, and the recorder follows tensors by identity
        inputs = [x if keras.ops.is_tensor(x) else keras.ops.convert_to_tensor(x) for x in inputs]
        with recorder:
            recorder.result = self.net(inputs if len(inputs) > 1 else inputs[0], training=training)
        self.conversions.update(recorder.conversions)
        self.input_layouts.update(recorder.input_layouts)
        self.input_shapes.update(recorder.input_shapes)
        self.takes_list.update(recorder.takes_list)
        self.output_conversions = recorder.output_conversions
        self.output_producers = recorder.output_producers
        return recorder

    def output_arrays(self, result) -> dict[str, np.ndarray]:
        arrays = {}
        for index, tensor in enumerate(km.flatten(result)):
            conversion = self.output_conversions[index] if index < len(self.output_conversions) else km.UNRESOLVED
            array = numpy(tensor)
            if conversion == km.UNRESOLVED:
                if array.ndim >= 3:
                    producer = self.output_producers[index] if index < len(self.output_producers) else ""
                    if producer in self.units:
                        raise ValueError(km.unresolved_message(producer, self.units[producer], array.shape))
                    raise ValueError(f"the layout of model output {index} (shape {array.shape}) cannot be told: "
                                     "the layer that makes it needs a declared layout (docs/byo.md)")
                conversion = layout.PLAIN
            arrays[output_key(index)] = layout.to_canonical(array, conversion)
        return arrays

    def input_array(self, path: str, index: int, array: np.ndarray) -> np.ndarray:
        conversion = self.input_layouts[path][index]
        if conversion == km.UNRESOLVED:
            if array.ndim >= 3:
                raise ValueError(f"the layout of input {index} of Keras layer {path!r} (shape {array.shape}) cannot be "
                                 "told: the layer that made it needs a declared layout (docs/byo.md)")
            conversion = layout.PLAIN
        return layout.to_canonical(array, conversion)

    def layer_array(self, path: str, array: np.ndarray) -> np.ndarray:
        conversion = self.conversions.get(path, km.UNRESOLVED)
        if conversion == km.UNRESOLVED:
            raise ValueError(km.unresolved_message(path, self.units[path], array.shape))
        return layout.to_canonical(array, conversion)


def _conversions(net, inputs: list[dict] | None) -> list[str]:
    """Each model input's conversion: declared, or (a zoo model, built with its inputs) channels for an image."""
    if inputs:
        return [layout.activation_layout(spec.get("layout", "image"), spec.get("shape")) for spec in inputs]
    declared = getattr(net, "inputs", None) or []
    return [layout.CHANNELS if len(t.shape) >= 3 else layout.PLAIN for t in declared]


def _build_on_zeros(net, inputs: list[dict], dtype: str) -> None:
    """A subclassed model or a Sequential without an Input creates its weights on first call."""
    zeros = [np.zeros(tuple(spec["shape"]), dtype=spec.get("dtype", "float32")) for spec in inputs]
    conversions = [layout.activation_layout(spec.get("layout", "image"), spec["shape"]) for spec in inputs]
    arrays = km.to_keras_inputs(zeros, conversions, dtype)
    net(arrays if len(arrays) > 1 else arrays[0], training=False)



def _loss(kind: str, output, target):
    ops = keras.ops
    if kind == "cross_entropy":
        return ops.mean(keras.losses.sparse_categorical_crossentropy(target, output, from_logits=True))
    if kind == "bce_logits":
        return ops.mean(ops.binary_crossentropy(target, output, from_logits=True))
    if kind == "bce":  # torch's BCELoss: log clamped at -100 (Keras' own clips p at 1e-7 instead)
        log_p, log_q = ops.maximum(ops.log(output), -100.0), ops.maximum(ops.log(1.0 - output), -100.0)
        return -ops.mean(target * log_p + (1.0 - target) * log_q)
    return ops.mean(ops.square(output - target))



# The layers that are random in training, and the option that switches each off for the
# gradients pass (torch's dropout modules are put in eval mode for it)
_NOISE_LAYERS = ((keras.layers.Dropout, "rate"), (keras.layers.GaussianDropout, "rate"),
                 (keras.layers.AlphaDropout, "rate"), (keras.layers.GaussianNoise, "stddev"))


def _recorded(built: _Built, capture) -> list[str]:
    """The layers a forward records: the names asked for, every leaf for True, none for False."""
    if capture is True:
        return [path for path, unit in built.units.items() if path and not unit.children]
    unknown = [name for name in (capture or []) if name not in built.units]
    if unknown:
        raise KeyError(f"the Keras model has no layer(s) {unknown[:5]}")
    return list(capture or [])


class KerasAdapter(Adapter):
    """The protocol's operations on a Keras model; a backend's adapter adds ``setup``,
    ``environment``, ``differentiate`` and ``export_onnx``."""

    framework, backend = "keras", "tensorflow"  # the row's name; the KERAS_BACKEND it needs

    def __init__(self):
        self._models = common.Models()
        self._settings = {"device": "cpu", "threads": 1, "deterministic": True}

    def check_backend(self) -> None:
        if keras.backend.backend() != self.backend:
            raise RuntimeError(f"the {self.framework} worker runs Keras on {keras.backend.backend()!r}: set "
                               f"KERAS_BACKEND={self.backend} before Keras is imported")

    def differentiate(self, loss_of, variables: list, inputs: list, state: list):
        """``loss_of(inputs)``: the train-mode loss of these input tensors.  Returns the loss, the
        dense gradient of each variable (None where the loss does not reach it) and of each input,
        with what the pass assigned to ``state`` (BatchNorm statistics) assigned as by a call."""
        raise NotImplementedError

    def build(self, handle: str, factory: str, model: str, config: dict, seed: int, dtype: str = "float32",
              inputs: list[dict] | None = None) -> dict:
        seed_everything(seed)
        # Every layer built now computes and stores in dtype.  Keras caches its global dtype
        # policy at first use, so setting floatx alone would not reach a second build.
        previous = keras.config.floatx(), keras.config.dtype_policy()
        compute = "float32" if dtype.startswith("mixed_") else dtype  # mixed: float32 variables
        keras.config.set_floatx(compute)
        keras.config.set_dtype_policy(dtype)
        try:
            net = common.load_factory(factory)(model, **config)
            if not isinstance(net, keras.Model):
                raise ValueError(f"factory {factory!r} must return a keras.Model (functional, Sequential or "
                                f"subclassed), got {type(net).__name__}")
            if not net.built or (inputs and not net.weights and not getattr(net, "inputs", None)):
                if not inputs:
                    raise ValueError(f"the Keras model from {factory!r} is not built (a subclassed model, or a "
                                     "Sequential without an Input): give the case its input shapes")
                _build_on_zeros(net, inputs, compute)
        finally:
            keras.config.set_floatx(previous[0])
            keras.config.set_dtype_policy(previous[1])
        built = _Built(net, compute, _conversions(net, inputs))
        if compute == "float64":
            for unit in built.units.values():
                if unit.mapping is not None and unit.mapping.prepare_float64 is not None:
                    unit.mapping.prepare_float64(unit.layer)
        if inputs:  # one recorded pass finds every layer's layout, before any real input
            zeros = [np.zeros(tuple(spec["shape"]), dtype=spec.get("dtype", "float32")) for spec in inputs]
            built.call(km.to_keras_inputs(zeros, built.input_conversions, compute))
        self._models.put(handle, built)
        return {
            "weights": {name: list(shape) for name, shape in km.canonical_shapes(built.slots).items()},
            "parameters": int(sum(int(np.prod(v.shape)) for v in net.trainable_weights)),
            "layers": [path for path, unit in built.units.items() if path and not unit.children],
            "modules": km.describe(built.units, built.slots),
            "lossy": km.lossy_groups(built.slots),
        }

    def free(self, handle: str) -> None:
        self._models.drop(handle)

    def model(self, handle: str):
        """The framework model behind a handle (for in-process users such as repro/)."""
        return self._models.get(handle).net

    def save_weights(self, handle: str, path: str, metadata: dict | None = None) -> dict:
        tensors = km.canonical_weights(self._models.get(handle).slots)
        return {"digest": save_canonical(path, tensors, {"framework": self.framework, **(metadata or {})})}

    def load_weights(self, handle: str, path: str) -> dict:
        built = self._models.get(handle)
        transfer = WeightTransfer(load_canonical(path), target=f"keras model {handle!r}")
        for name, shape in km.canonical_shapes(built.slots).items():
            transfer.expect(name, shape)
        transfer.check()
        for slot in built.slots:
            # in the variables' dtype before the mapping computes: a float64 model's summed biases
            # must be summed in float64, not rounded to the file's float32 first
            dtype = np.dtype(slot.variables[0].dtype)
            given = [transfer.take(name) for name in slot.names]
            values = slot.rule.to_keras(*(a.astype(dtype) if np.issubdtype(a.dtype, np.floating) else a for a in given))
            for variable, value in zip(slot.variables, values):
                if tuple(value.shape) != tuple(variable.shape):
                    raise ValueError(f"mapping of layer {slot.layer!r} gives {variable.path!r} the shape {value.shape}, "
                                     f"the variable is {tuple(variable.shape)}")
                # cast here: TF would hold the float32 tensor and its cast beside the variable
                variable.assign(np.asarray(value, dtype=variable.dtype))
        return transfer.finish()

    def load_native(self, handle: str, path: str) -> dict:
        """Load Keras weights (``.weights.h5``) into the model."""
        net = self._models.get(handle).net
        if not os.path.isfile(path):
            raise FileNotFoundError(f"Keras weights file not found: {path}")
        try:
            net.load_weights(path)
        except (ValueError, OSError) as error:
            raise ValueError(f"{path} does not fit model {handle!r}: {error}") from None
        return {"tensors": len(net.weights), "parameters": int(sum(int(np.prod(v.shape)) for v in net.trainable_weights))}

    def save_native(self, handle: str, path: str) -> dict:
        """Keras weights file; the name must end in ``.weights.h5`` (Keras' rule)."""
        atomic_write(path, lambda target: self._models.get(handle).net.save_weights(target))
        return {"path": path}

    def forward(self, handle: str, input_path: str, output_path: str, capture=False) -> dict:
        """``capture``: the layers to record (a list of names), True for every leaf, False for none."""
        built = self._models.get(handle)
        data = load_arrays(input_path)
        record = _recorded(built, capture)
        recorder = built.call(built.inputs(data), record=record, with_inputs=bool(record))
        arrays = built.output_arrays(recorder.result)
        for key, value in recorder.arrays.items():
            kind, _, rest = key.partition(":")
            if kind == protocol.INPUT:
                path, _, index = rest.rpartition(":")
                arrays[key] = built.input_array(path, int(index), value)
            else:
                arrays[key] = built.layer_array(rest, value)
        if record:
            arrays.update(protocol.input_arrays(protocol.model_inputs(data)))
        save_arrays(output_path, arrays)
        return {"layers": [path for path in recorder.order if path in record]}

    def forward_isolated(self, handle: str, reference_path: str, output_path: str, layers: list[str]) -> dict:
        """Run each layer alone on the reference framework's input to that layer."""
        built = self._models.get(handle)
        reference = load_arrays(reference_path)
        if not built.input_layouts:  # no pass has been recorded yet: one on the reference's model inputs
            built.call(built.inputs(reference))
        arrays, not_isolated = {}, {}
        for name in layers:
            unit = built.units[name]
            conversions = built.input_layouts.get(name)
            if conversions is None:
                raise ValueError(f"Keras layer {name!r} did not run in the recorded pass")
            captured = common.layer_inputs(reference, name)
            order = unit.mapping.call_order if unit.mapping is not None and unit.mapping.call_order else None
            if order and len(captured) == len(order):
                captured = [captured[i] for i in order]
                conversions = [conversions[min(i, len(conversions) - 1)] for i in order]
            given = [layout.from_canonical(x, c if c != km.UNRESOLVED else layout.PLAIN) for x, c in
                     zip(captured, conversions + [conversions[-1]] * (len(captured) - len(conversions)))]
            given = [x.astype(built.dtype) if np.issubdtype(x.dtype, np.floating) else x for x in given]
            own = built.input_shapes.get(name, [])
            if [tuple(x.shape) for x in given] != (own if not order else [own[min(i, len(own) - 1)] for i in order]):
                # torch's module pads inside, the Keras twin in a layer before (ZeroPadding2D): this
                # layer sees another input than torch's, so it is judged only in the propagated passes
                not_isolated[name] = (f"its Keras input {own} is not torch's {[tuple(x.shape) for x in given]}: "
                                      "it comes through layers torch does not have (a padding layer?)")
                continue
            call = unit.layer(given, training=False) if built.takes_list.get(name) else unit.layer(*given, training=False)
            result = km.flatten(call)[0]
            arrays[layer_key(name)] = built.layer_array(name, numpy(result))
        save_arrays(output_path, arrays)
        return {"layers": [name for name in layers if name not in not_isolated], "not_isolated": not_isolated}

    def gradients(self, handle: str, input_path: str, output_path: str, loss: str = "cross_entropy",
                  capture: list | None = None) -> dict:
        """One train-mode forward/backward (dropout off); the model's state is restored after.

        Writes the gradient of every trainable weight, of each floating input, and the state after
        the pass: every non-trainable weight (BN moving statistics, frozen weights), all keyed by
        canonical name in canonical layout.
        """
        built = self._models.get(handle)
        net = built.net
        data = load_arrays(input_path)
        inputs = [keras.ops.convert_to_tensor(x) for x in built.inputs(data)]
        watched = [i for i, x in enumerate(built.inputs(data)) if np.issubdtype(x.dtype, np.floating)]
        state = [v for v in net.weights if not v.trainable]  # what a pass can change (BN statistics)
        snapshot = [numpy(v) for v in state]
        noise = [(unit.layer, attribute) for unit in built.units.values() for cls, attribute in _NOISE_LAYERS
                 if isinstance(unit.layer, cls)]
        rates = [getattr(layer, attribute) for layer, attribute in noise]
        trained = [slot for slot in built.slots if slot.trainable]
        variables = [v for slot in trained for v in slot.variables]
        captured = {}

        def restore_state() -> None:
            for variable, value_before in zip(state, snapshot):
                variable.assign(value_before)

        def loss_of(given: list):
            tensors = list(inputs)
            for index, tensor in zip(watched, given):
                tensors[index] = tensor
            outputs = km.flatten(net(tensors if len(tensors) > 1 else tensors[0], training=True))
            plan = common.loss_plan(loss, data, len(outputs))
            value = sum(_loss(kind, out, keras.ops.convert_to_tensor(
                target if kind == "cross_entropy" else
                layout.from_canonical(target, built.output_conversions[i]).astype(built.dtype)))
                for i, (out, (kind, target)) in enumerate(zip(outputs, plan)))
            if net.losses:  # weight penalties (e.g. L2 kernel regularizers)
                value = value + keras.ops.sum(keras.ops.stack(net.losses))
            return value

        try:
            for layer, attribute in noise:
                setattr(layer, attribute, 0.0)
            if capture or not built.output_conversions:
                # the layers' train-mode inputs (BN's), recorded in a pass of its own: a traced pass
                # (JAX) holds no values to record; its state changes are undone before the real one
                recorder = built.call(inputs, training=True, record=_recorded(built, capture or []),
                                      with_inputs=bool(capture))
                captured = recorder.arrays
                restore_state()
            value, gradients, input_gradients = self.differentiate(
                loss_of, variables, [inputs[i] for i in watched], state)
            arrays, position = {}, 0
            for slot in trained:
                given = gradients[position:position + len(slot.variables)]
                position += len(slot.variables)
                if any(g is None for g in given):
                    continue
                dense = [numpy(g) for g in given]
                arrays.update({grad_key(n): g for n, g in zip(slot.names, slot.rule.gradients(*dense))})
            for index, gradient in zip(watched, input_gradients):
                arrays[protocol.input_gradient_key(index)] = layout.to_canonical(numpy(gradient),
                                                                                 built.input_conversions[index])
            for slot in built.slots:
                if not slot.trainable:
                    values = [numpy(v) for v in slot.variables]
                    arrays.update({state_key(n): a for n, a in zip(slot.names, slot.rule.from_keras(*values))})
        finally:
            for (layer, attribute), rate in zip(noise, rates):
                setattr(layer, attribute, rate)
            restore_state()
        value = float(numpy(value))
        arrays[protocol.LOSS] = np.asarray(value, dtype=np.float64)
        for key, array in captured.items():
            if key.startswith(protocol.INPUT + ":"):
                path, _, index = key.partition(":")[2].rpartition(":")
                arrays[key] = built.input_array(path, int(index), array)
        save_arrays(output_path, arrays)
        return {"loss": value}


    def export_onnx(self, handle: str, path: str, input_shape: list[int], opset: int = 18, exporter: str = "keras",
                    inputs: list[dict] | None = None) -> dict:
        """Keras' own exporter for this backend, on the model wrapped to take and return the
        canonical layout (the transposes inside the graph), as every twin's ONNX file is called."""
        import onnx
        from keras.src.export.onnx import export_onnx

        if exporter != "keras":
            raise ValueError(f"unknown exporter {exporter!r} for Keras on {keras.backend.backend()}; use 'keras'")
        built = self._models.get(handle)
        inputs = inputs or [{"shape": list(input_shape), "dtype": "float32"}]
        if not built.output_conversions:  # the outputs' layouts come from one recorded pass
            zeros = [np.zeros(tuple(spec["shape"]), dtype=spec.get("dtype", "float32")) for spec in inputs]
            built.call(km.to_keras_inputs(zeros, built.input_conversions, built.dtype))
        wrapper = _CanonicalInterface(built)
        specs = [keras.InputSpec(shape=tuple(spec["shape"]), dtype=spec.get("dtype", "float32"),
                                 name=protocol.onnx_input_name(i, len(inputs))) for i, spec in enumerate(inputs)]
        wrapper([keras.ops.zeros(tuple(s["shape"]), dtype=s.get("dtype", "float32")) for s in inputs])
        checked = {}

        def write(temporary: str) -> None:  # checked before it is renamed into place
            export_onnx(wrapper, temporary, input_signature=[specs], opset_version=opset, verbose=False)
            checked["opset"], checked["onnx"] = common.checked_onnx(temporary)

        atomic_write(path, write)
        return {"exporter": f"keras.export onnx ({keras.backend.backend()} backend)", "opset": checked["opset"],
                "versions": {"keras": keras.__version__, "onnx": onnx.__version__},
                "input_layout": "canonical (channels-first; transposed inside the graph)"}


class _CanonicalInterface(keras.Model):
    """A built model called in the canonical layout: channels-first inputs transposed to Keras'
    channels-last inside the call, and its channels-last outputs back."""

    def __init__(self, built: _Built):
        super().__init__(name="canonical_interface")
        self.net, self.input_conversions, self.output_conversions = built.net, built.input_conversions, \
            built.output_conversions

    def call(self, inputs):
        ops = keras.ops
        tensors = [ops.transpose(t, (0, *range(2, len(t.shape)), 1)) if c == layout.CHANNELS else t
                   for t, c in zip(inputs, self.input_conversions)]
        outputs = km.flatten(self.net(tensors if len(tensors) > 1 else tensors[0], training=False))
        return [ops.transpose(o, (0, len(o.shape) - 1, *range(1, len(o.shape) - 1)))
                if c == layout.CHANNELS and len(o.shape) >= 3 else o for o, c in zip(outputs, self.output_conversions)]
