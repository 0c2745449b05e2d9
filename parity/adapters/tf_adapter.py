"""Keras 3 (TensorFlow backend) side of the parity protocol (imported only where TensorFlow is held).

How a Keras model is named, bound to canonical weights and recorded is ``keras_model``'s (the
backend-free part); this module adds what is TensorFlow's: settings, gradients and ONNX export.
Activations cross in the canonical (torch) layout: each array is converted by the layout its
layer kind rules (``parity.mappings``) or the case declares for a model input.
"""

from __future__ import annotations

import inspect
import os
import platform
import random

import numpy as np
import tensorflow as tf
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
    keras.utils.set_random_seed(seed)  # Python, NumPy and TF seeds, and Keras' own generator


def _gelu_in_its_dtype(features, approximate=False, name=None):
    """``tf.nn.gelu`` with its constants in the tensor's dtype.  TF's casts Python floats
    (1/sqrt 2, 0.044715) to the dtype through a float32 tensor, so a float64 exact GELU is 5e-9
    off torch's; in float32 the two are the same bits."""
    with tf.name_scope(name or "Gelu"):
        features = tf.convert_to_tensor(features, name="features")
        if approximate:
            coeff = tf.constant(0.044715, features.dtype)
            root = tf.constant(0.7978845608028654, features.dtype)
            return 0.5 * features * (1.0 + tf.tanh(root * (features + coeff * tf.pow(features, 3))))
        return 0.5 * features * tf.math.erfc(-features * tf.constant(0.7071067811865476, features.dtype))


def _leaky_relu_in_its_dtype(features, alpha=0.2, name=None):
    """``tf.nn.leaky_relu`` with its slope in the tensor's dtype: TF's op keeps alpha as a float32
    attribute, so a float64 LeakyReLU(0.01) is 2e-8 (relative) off torch's; in float32 the same
    bits, and the same gradient at 0 (the slope's, as torch's)."""
    with tf.name_scope(name or "LeakyRelu"):
        features = tf.convert_to_tensor(features, name="features")
        return tf.where(features > 0, features, features * tf.constant(alpha, features.dtype))


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
        inputs = [x if tf.is_tensor(x) else tf.constant(x) for x in inputs]
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
            array = np.asarray(tensor)
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


# -- gradients ---------------------------------------------------------------

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


# -- ONNX ----------------------------------------------------------------------

# Above this many elements in one weight, or in all of them, tf2onnx's constant handling is the
# bottleneck (VGG's 25088x4096 Dense alone: 75 s and 15 GB; ViT-B/16's 86 M parameters in 150
# tensors: 16 GB); below it, constants are the faster path (MeDiANet's ~1000 small tensors export
# twice as fast as constants than as arguments).
# the layers that are random in training, and the option that switches each off for the
# gradients pass (torch's dropout modules are put in eval mode for it)
_NOISE_LAYERS = ((keras.layers.Dropout, "rate"), (keras.layers.GaussianDropout, "rate"),
                 (keras.layers.AlphaDropout, "rate"), (keras.layers.GaussianNoise, "stddev"))

LARGE_WEIGHT = 1 << 24
LARGE_MODEL = 1 << 25


def _keras_side(tensors: list, conversions: list[str]) -> list:
    """Canonical graph inputs transposed to Keras' layout inside the graph."""
    return [tf.transpose(t, [0, *range(2, t.shape.rank), 1]) if c == layout.CHANNELS else t
            for t, c in zip(tensors, conversions)]


def _canonical_side(outputs, conversions: list[str]) -> list:
    return [tf.transpose(o, [0, o.shape.rank - 1, *range(1, o.shape.rank - 1)])
            if c == layout.CHANNELS and o.shape.rank >= 3 else o for o, c in zip(km.flatten(outputs), conversions)]


def _erfc(ctx, node, name, args):
    """tf2onnx has no handler for TF's Erfc (exact GELU: 0.5 x erfc(-x / sqrt 2)) and ONNX no Erfc
    op: write it as 1 - Erf(x)."""
    from tf2onnx import utils

    erf = ctx.make_node("Erf", [node.input[0]])
    one = ctx.make_const(utils.make_name("one"), np.array(1, dtype=utils.map_onnx_to_numpy_type(ctx.get_dtype(node.input[0]))))
    node.type = "Sub"
    ctx.replace_inputs(node, [one.output[0], erf.output[0]])


TF2ONNX_HANDLERS = {"Erfc": (_erfc, [])}


def _single(inputs: list):
    return inputs if len(inputs) > 1 else inputs[0]


def _trace_weights_as_constants(built: _Built, specs: list, opset: int):
    import tf2onnx

    net = built.net

    @tf.function(input_signature=specs)
    def canonical_call(*x):
        outputs = net(_single(_keras_side(list(x), built.input_conversions)), training=False)
        return _canonical_side(outputs, built.output_conversions)

    proto, _ = tf2onnx.convert.from_function(canonical_call, input_signature=specs, opset=opset,
                                             custom_op_handlers=TF2ONNX_HANDLERS)
    return proto


def _trace_weights_as_arguments(built: _Built, specs: list, opset: int):
    import tf2onnx
    from onnx import numpy_helper

    net = built.net
    variables = [*net.trainable_variables, *net.non_trainable_variables]
    trainable = len(net.trainable_variables)
    names = [f"twinframe_weight_{i}" for i in range(len(variables))]
    signature = list(specs) + [tf.TensorSpec(v.shape, v.dtype, name=name) for v, name in zip(variables, names)]
    count = len(specs)

    # stateless_call hands its keywords to call(): a subclassed model's call may have no `training`
    mode = {"training": False} if "training" in inspect.signature(net.call).parameters else {}

    @tf.function(input_signature=signature)
    def canonical_call(*args):
        weights = args[count:]
        outputs, _ = net.stateless_call(list(weights[:trainable]), list(weights[trainable:]),
                                        _single(_keras_side(list(args[:count]), built.input_conversions)), **mode)
        return _canonical_side(outputs, built.output_conversions)

    proto, _ = tf2onnx.convert.from_function(canonical_call, input_signature=signature, opset=opset,
                                             custom_op_handlers=TF2ONNX_HANDLERS)
    graph, values = proto.graph, dict(zip(names, variables))
    weights = [i for i in graph.input if i.name in values]
    for value_info in weights:
        graph.input.remove(value_info)
        graph.initializer.append(numpy_helper.from_array(np.asarray(values[value_info.name].numpy()), value_info.name))
    if len(weights) != len(variables):
        raise RuntimeError(f"tf2onnx kept {len(weights)} of the {len(variables)} weight inputs of {net.name!r}")
    return proto


def _recorded(built: _Built, capture) -> list[str]:
    """The layers a forward records: the names asked for, every leaf for True, none for False."""
    if capture is True:
        return [path for path, unit in built.units.items() if path and not unit.children]
    unknown = [name for name in (capture or []) if name not in built.units]
    if unknown:
        raise KeyError(f"the Keras model has no layer(s) {unknown[:5]}")
    return list(capture or [])


# -- the ops ------------------------------------------------------------------
class TfAdapter(Adapter):
    framework = "tf"

    def __init__(self):
        self._models = common.Models()
        self._settings = {"device": "cpu", "threads": 1, "deterministic": True}

    def setup(self, threads: int = 1, device: str = "cpu", deterministic: bool = True) -> dict:
        if device == "cpu":
            tf.config.set_visible_devices([], "GPU")
        elif not tf.config.list_physical_devices("GPU"):
            raise RuntimeError(f"device {device!r} requested but TensorFlow sees no GPU")
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
        tf.config.experimental.enable_tensor_float_32_execution(False)  # TF32 breaks float32 parity
        if deterministic:
            tf.config.experimental.enable_op_determinism()
        # Keras' gelu and leaky_relu call these: their constants in the model's dtype in this process
        tf.nn.gelu, tf.nn.leaky_relu = _gelu_in_its_dtype, _leaky_relu_in_its_dtype
        self._settings.update(device=device, threads=threads, deterministic=deterministic)
        return self.environment()

    def environment(self) -> dict:
        gpus = tf.config.get_visible_devices("GPU")
        return {
            "framework": self.framework,
            "versions": {
                "tensorflow": tf.__version__, "keras": keras.__version__,
                "numpy": np.__version__, "python": platform.python_version(),
            },
            "threads": {
                "intra_op": tf.config.threading.get_intra_op_parallelism_threads(),
                "inter_op": tf.config.threading.get_inter_op_parallelism_threads(),
            },
            "device": self._settings["device"],
            "device_name": str(gpus[0].name) if gpus else platform.processor() or "cpu",
            "flags": {
                "op_determinism": self._settings["deterministic"],
                "tf32": tf.config.experimental.tensor_float_32_execution_enabled(),
                "onednn_opts": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "unset"),
                "jit_compile": False,
            },
        }

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
            arrays[layer_key(name)] = built.layer_array(name, np.asarray(result))
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
        inputs = [tf.constant(x) for x in built.inputs(data)]
        watched = [i for i, x in enumerate(inputs) if x.dtype.is_floating]
        state = [v for v in net.weights if not v.trainable]  # what a pass can change (BN statistics)
        snapshot = [np.array(v.numpy()) for v in state]
        noise = [(unit.layer, attribute) for unit in built.units.values() for cls, attribute in _NOISE_LAYERS
                 if isinstance(unit.layer, cls)]
        rates = [getattr(layer, attribute) for layer, attribute in noise]
        trained = [slot for slot in built.slots if slot.trainable]
        try:
            for layer, attribute in noise:
                setattr(layer, attribute, 0.0)
            with tf.GradientTape() as tape:
                for index in watched:
                    tape.watch(inputs[index])
                recorder = built.call(inputs, training=True, record=_recorded(built, capture or []),
                                      with_inputs=bool(capture))
                outputs = km.flatten(recorder.result)
                plan = common.loss_plan(loss, data, len(outputs))
                value = sum(_loss(kind, out, target if kind == "cross_entropy" else
                                  layout.from_canonical(target, built.output_conversions[i]).astype(built.dtype))
                            for i, (out, (kind, target)) in enumerate(zip(outputs, plan)))
                if net.losses:  # weight penalties (e.g. L2 kernel regularizers)
                    value = value + keras.ops.sum(keras.ops.stack(net.losses))
            variables = [v for slot in trained for v in slot.variables]
            gradients = tape.gradient(value, variables + [inputs[i] for i in watched])
            arrays, position = {}, 0
            for slot in trained:
                given = gradients[position:position + len(slot.variables)]
                position += len(slot.variables)
                if any(g is None for g in given):
                    continue
                dense = [np.asarray(tf.convert_to_tensor(g)) for g in given]  # an Embedding's is sparse
                arrays.update({grad_key(n): g for n, g in zip(slot.names, slot.rule.gradients(*dense))})
            for index, gradient in zip(watched, gradients[position:]):
                arrays[protocol.input_gradient_key(index)] = layout.to_canonical(np.asarray(gradient),
                                                                                 built.input_conversions[index])
            for slot in built.slots:
                if not slot.trainable:
                    values = [np.asarray(v.numpy()) for v in slot.variables]
                    arrays.update({state_key(n): a for n, a in zip(slot.names, slot.rule.from_keras(*values))})
        finally:
            for (layer, attribute), rate in zip(noise, rates):
                setattr(layer, attribute, rate)
            for variable, value_before in zip(state, snapshot):
                variable.assign(value_before)
        arrays[protocol.LOSS] = np.asarray(float(value), dtype=np.float64)
        for key, captured in recorder.arrays.items():
            if key.startswith(protocol.INPUT + ":"):
                path, _, index = key.partition(":")[2].rpartition(":")
                arrays[key] = built.input_array(path, int(index), captured)
        save_arrays(output_path, arrays)
        return {"loss": float(value)}

    def export_onnx(self, handle: str, path: str, input_shape: list[int], opset: int = 18, exporter: str = "tf2onnx",
                    inputs: list[dict] | None = None) -> dict:
        """Export through tf2onnx with the canonical interface.

        The graph takes and returns the canonical layout (NCHW images; transposes inside the
        graph), so both frameworks' ONNX files are called the same way.  ``inputs`` (shape and
        dtype each) replaces ``input_shape`` for a model of several or integer inputs.  Models
        with a weight over ``LARGE_WEIGHT`` elements (or over ``LARGE_MODEL`` in all) are traced
        with their weights as arguments, which become ONNX initializers afterwards; the others
        with their weights as constants.
        """
        import onnx
        import tf2onnx

        if exporter != "tf2onnx":
            raise ValueError(f"unknown Keras ONNX exporter {exporter!r}; use 'tf2onnx'")
        built = self._models.get(handle)
        inputs = inputs or [{"shape": list(input_shape), "dtype": "float32"}]
        specs = [tf.TensorSpec(tuple(spec["shape"]), tf.as_dtype(spec.get("dtype", "float32")),
                               name=protocol.onnx_input_name(i, len(inputs))) for i, spec in enumerate(inputs)]
        if not built.output_conversions:  # the outputs' layouts come from one recorded pass
            zeros = [np.zeros(tuple(spec["shape"]), dtype=spec.get("dtype", "float32")) for spec in inputs]
            built.call(km.to_keras_inputs(zeros, built.input_conversions, built.dtype))
        sizes = [int(np.prod(v.shape)) for v in built.net.weights]
        as_arguments = max(sizes) > LARGE_WEIGHT or sum(sizes) > LARGE_MODEL
        trace = _trace_weights_as_arguments if as_arguments else _trace_weights_as_constants
        proto = trace(built, specs, opset)
        checked = {}

        def write(temporary: str) -> None:  # checked before it is renamed into place
            onnx.save(proto, temporary)
            checked["opset"], checked["onnx"] = common.checked_onnx(temporary)

        atomic_write(path, write)
        opset_used, onnx_version = checked["opset"], checked["onnx"]
        return {
            "exporter": f"tf2onnx (tf.function, weights as {'initializers' if as_arguments else 'constants'})",
            "opset": opset_used,
            "versions": {"tensorflow": tf.__version__, "tf2onnx": tf2onnx.__version__, "onnx": onnx_version},
            "input_layout": "canonical (channels-first; transposed inside the graph)",
        }
