"""Keras 3 (TensorFlow backend) side of the parity protocol (imported only where TensorFlow is held).

A Keras layer's name is its canonical name.  Each weight kind has one small hook
that says which Keras variable holds which canonical tensor and in what layout;
custom layers declare theirs in a ``canonical_weights`` class attribute of
``(variable attribute, canonical suffix, layout kind)`` triples.
Activations cross in the canonical channel-first layout.
"""

from __future__ import annotations

import os
import platform
import random

import numpy as np
import tensorflow as tf
import keras

from parity import protocol
from parity.adapters import common
from parity.protocol import Adapter, grad_key, input_key, layer_key, load_arrays, output_key, save_arrays, state_key
from canon.files import atomic_write
from canon import layout
from canon.weights import WeightTransfer, load_canonical, save_canonical

# Keras layer class -> (variable attribute, canonical suffix, layout kind)
WEIGHT_HOOKS: dict[type, tuple[tuple[str, str, str], ...]] = {
    keras.layers.Conv2D: (("kernel", "weight", "conv2d"), ("bias", "bias", "identity")),
    keras.layers.Conv2DTranspose: (("kernel", "weight", "conv2d_transpose"), ("bias", "bias", "identity")),
    keras.layers.Dense: (("kernel", "weight", "dense"), ("bias", "bias", "identity")),
    keras.layers.BatchNormalization: (
        ("gamma", "weight", "identity"), ("beta", "bias", "identity"),
        ("moving_mean", "running_mean", "identity"), ("moving_variance", "running_var", "identity"),
    ),
}


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    keras.utils.set_random_seed(seed)  # Python, NumPy and TF seeds, and Keras' own generator


# -- canonical weights -------------------------------------------------------

def _hooks_for(layer) -> tuple[tuple[str, str, str], ...]:
    declared = getattr(layer, "canonical_weights", None)
    if declared is not None:
        return tuple(declared)
    for cls in type(layer).__mro__:
        if cls in WEIGHT_HOOKS:
            return WEIGHT_HOOKS[cls]
    return ()


def _slots(net: keras.Model):
    """(canonical name, variable, layout kind) for every weight; fails on unmapped weights."""
    slots, claimed = [], set()
    for layer in net.layers:
        for attribute, suffix, kind in _hooks_for(layer):
            variable = getattr(layer, attribute, None)
            if variable is None:  # e.g. use_bias=False
                continue
            slots.append((f"{layer.name}.{suffix}", variable, kind))
            claimed.add(id(variable))
        unclaimed = [v.path for v in layer.weights if id(v) not in claimed]
        if unclaimed:
            raise TypeError(
                f"layer {layer.name!r} ({type(layer).__name__}) holds weights with no canonical mapping: "
                f"{unclaimed}; add a hook to WEIGHT_HOOKS or a canonical_weights attribute"
            )
    return slots


def _canonical_shape(kind: str, shape) -> tuple[int, ...]:
    return layout.from_keras(kind, np.empty(tuple(shape), dtype=np.uint8)).shape


def _canonical_shapes(net) -> dict[str, tuple[int, ...]]:
    return {name: _canonical_shape(kind, variable.shape) for name, variable, kind in _slots(net)}


def canonical_weights(net) -> dict[str, np.ndarray]:
    return {name: layout.from_keras(kind, np.asarray(variable.numpy())) for name, variable, kind in _slots(net)}


# -- forward passes ----------------------------------------------------------

def _compared_layers(net):
    return [layer for layer in net.layers if not isinstance(layer, keras.layers.InputLayer)]


def _as_list(value):
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _input(net, array: np.ndarray) -> np.ndarray:
    """Canonical NCHW array -> NHWC in the model's input dtype."""
    return layout.channels_last(array).astype(net.inputs[0].dtype)


def _outputs(result) -> dict[str, np.ndarray]:
    return {output_key(i): layout.channels_first(np.asarray(r)) for i, r in enumerate(_as_list(result))}


def _probe(net):
    """A model returning every layer's inputs and output (built once per model)."""
    probe = getattr(net, "_twinframe_probe", None)
    if probe is None:
        outputs = {}
        for layer in _compared_layers(net):
            try:
                outputs[layer_key(layer.name)] = layer.output
                layer_inputs = _as_list(layer.input)
            except (AttributeError, ValueError) as error:
                raise ValueError(
                    f"layer {layer.name!r} is used more than once in the graph; layer-wise "
                    f"comparison needs one layer per call ({error})"
                ) from None
            for i, tensor in enumerate(layer_inputs):
                outputs[input_key(layer.name, i)] = tensor
        for i, tensor in enumerate(net.outputs):
            outputs[output_key(i)] = tensor
        probe = keras.Model(net.inputs, outputs)
        net._twinframe_probe = probe
    return probe


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


def _targets(net, kind: str, target: np.ndarray):
    """Class indices stay as they are; other targets take the output layout and the model's dtype."""
    return target if kind == "cross_entropy" else _input(net, target)


# -- ONNX ----------------------------------------------------------------------

# Above this many elements in one weight, tf2onnx's constant handling is the bottleneck
# (VGG's 25088x4096 Dense alone: 75 s and 15 GB); below it, constants are the faster path
# (MeDiANet's ~1000 small tensors export twice as fast as constants than as arguments).
LARGE_WEIGHT = 1 << 24


def _to_channels_last(x):
    return tf.transpose(x, [0, *range(2, x.shape.rank), 1])


def _to_channels_first(outputs) -> list:
    return [tf.transpose(o, [0, o.shape.rank - 1, *range(1, o.shape.rank - 1)]) if o.shape.rank >= 3 else o
            for o in _as_list(outputs)]


def _trace_weights_as_constants(net, input_spec, opset: int):
    import tf2onnx

    @tf.function(input_signature=[input_spec])
    def canonical_call(x):
        return _to_channels_first(net(_to_channels_last(x), training=False))

    proto, _ = tf2onnx.convert.from_function(canonical_call, input_signature=[input_spec], opset=opset)
    return proto


def _trace_weights_as_arguments(net, input_spec, opset: int):
    import tf2onnx
    from onnx import numpy_helper

    variables = [*net.trainable_variables, *net.non_trainable_variables]
    trainable = len(net.trainable_variables)
    names = [f"twinframe_weight_{i}" for i in range(len(variables))]
    signature = [input_spec] + [tf.TensorSpec(v.shape, v.dtype, name=name) for v, name in zip(variables, names)]

    @tf.function(input_signature=signature)
    def canonical_call(x, *weights):
        outputs, _ = net.stateless_call(list(weights[:trainable]), list(weights[trainable:]),
                                        _to_channels_last(x), training=False)
        return _to_channels_first(outputs)

    proto, _ = tf2onnx.convert.from_function(canonical_call, input_signature=signature, opset=opset)
    graph, values = proto.graph, dict(zip(names, variables))
    weights = [i for i in graph.input if i.name in values]
    for value_info in weights:
        graph.input.remove(value_info)
        graph.initializer.append(numpy_helper.from_array(np.asarray(values[value_info.name].numpy()), value_info.name))
    if len(weights) != len(variables):
        raise RuntimeError(f"tf2onnx kept {len(weights)} of the {len(variables)} weight inputs of {net.name!r}")
    return proto


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

    def build(self, handle: str, factory: str, model: str, config: dict, seed: int, dtype: str = "float32") -> dict:
        seed_everything(seed)
        # Every layer built now computes and stores in dtype.  Keras caches its global dtype
        # policy at first use, so setting floatx alone would not reach a second build.
        previous = keras.config.floatx(), keras.config.dtype_policy()
        keras.config.set_floatx("float32" if dtype.startswith("mixed_") else dtype)  # mixed: float32 variables
        keras.config.set_dtype_policy(dtype)
        try:
            net = common.load_factory(factory)(model, **config)
        finally:
            keras.config.set_floatx(previous[0])
            keras.config.set_dtype_policy(previous[1])
        if not isinstance(net, keras.Model) or not hasattr(net, "inputs") or net.inputs is None:
            raise TypeError(f"factory {factory!r} must return a functional keras.Model, got {type(net).__name__}")
        self._models.put(handle, net)
        return {
            "weights": {name: list(shape) for name, shape in _canonical_shapes(net).items()},
            "parameters": int(sum(int(np.prod(v.shape)) for v in net.trainable_weights)),
            "layers": [layer.name for layer in _compared_layers(net)],
        }

    def free(self, handle: str) -> None:
        self._models.drop(handle)

    def model(self, handle: str):
        """The framework model behind a handle (for in-process users such as repro/)."""
        return self._models.get(handle)

    def save_weights(self, handle: str, path: str, metadata: dict | None = None) -> dict:
        digest = save_canonical(path, canonical_weights(self._models.get(handle)), {"framework": self.framework, **(metadata or {})})
        return {"digest": digest}

    def load_weights(self, handle: str, path: str) -> dict:
        net = self._models.get(handle)
        transfer = WeightTransfer(load_canonical(path), target=f"keras model {handle!r}")
        slots = _slots(net)
        for name, variable, kind in slots:
            transfer.expect(name, _canonical_shape(kind, variable.shape))
        transfer.check()
        for name, variable, kind in slots:
            # cast here: TF would hold the float32 tensor and its cast beside the variable
            variable.assign(np.asarray(layout.to_keras(kind, transfer.take(name)), dtype=variable.dtype))
        return transfer.finish()

    def load_native(self, handle: str, path: str) -> dict:
        """Load Keras weights (``.weights.h5``) into the model."""
        net = self._models.get(handle)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"Keras weights file not found: {path}")
        try:
            net.load_weights(path)
        except (ValueError, OSError) as error:
            raise ValueError(f"{path} does not fit model {handle!r}: {error}") from None
        return {"tensors": len(net.weights), "parameters": int(sum(int(np.prod(v.shape)) for v in net.trainable_weights))}

    def save_native(self, handle: str, path: str) -> dict:
        """Keras weights file; the name must end in ``.weights.h5`` (Keras' rule)."""
        atomic_write(path, lambda target: self._models.get(handle).save_weights(target))
        return {"path": path}

    def forward(self, handle: str, input_path: str, output_path: str, capture: bool = False) -> dict:
        net = self._models.get(handle)
        x = _input(net, load_arrays(input_path)[protocol.INPUT_ARRAY])
        if capture:
            result = _probe(net)(x, training=False)
            arrays = {key: layout.channels_first(np.asarray(value)) for key, value in result.items()}
            order = [layer.name for layer in _compared_layers(net)]
        else:
            arrays, order = _outputs(net(x, training=False)), []
        save_arrays(output_path, arrays)
        return {"layers": order}

    def forward_isolated(self, handle: str, reference_path: str, output_path: str, layers: list[str]) -> dict:
        """Run each layer alone on the reference framework's input to that layer."""
        net = self._models.get(handle)
        reference = load_arrays(reference_path)
        arrays = {}
        for name in layers:
            inputs = [_input(net, x) for x in common.layer_inputs(reference, name)]
            result = net.get_layer(name)(inputs if len(inputs) > 1 else inputs[0], training=False)
            arrays[layer_key(name)] = layout.channels_first(np.asarray(result))
        save_arrays(output_path, arrays)
        return {"layers": layers}

    def gradients(self, handle: str, input_path: str, output_path: str, loss: str = "cross_entropy") -> dict:
        """One train-mode forward/backward (dropout off); the model's state is restored after.

        Writes the gradient of every trainable weight, of the input, and the state after
        the pass: every non-trainable weight (BN moving statistics, frozen weights), all keyed
        by canonical name in canonical layout.
        """
        net = self._models.get(handle)
        data = load_arrays(input_path)
        x = tf.constant(_input(net, data[protocol.INPUT_ARRAY]))
        state = [v for v in net.weights if not v.trainable]  # what a pass can change (BN statistics)
        snapshot = [np.array(v.numpy()) for v in state]
        dropouts = [layer for layer in net.layers if isinstance(layer, keras.layers.Dropout)]
        rates = [layer.rate for layer in dropouts]
        try:
            for layer in dropouts:
                layer.rate = 0.0
            with tf.GradientTape() as tape:
                tape.watch(x)
                outputs = _as_list(net(x, training=True))
                plan = common.loss_plan(loss, data, len(outputs))
                value = sum(_loss(kind, out, _targets(net, kind, target)) for out, (kind, target) in zip(outputs, plan))
                if net.losses:  # weight penalties (e.g. L2 kernel regularizers)
                    value = value + keras.ops.sum(keras.ops.stack(net.losses))
            slots = [(n, v, k) for n, v, k in _slots(net) if v.trainable]
            *grads, input_grad = tape.gradient(value, [variable for _, variable, _ in slots] + [x])
            arrays = {grad_key(name): layout.from_keras(kind, np.asarray(g)) for (name, _, kind), g in zip(slots, grads) if g is not None}
            arrays[protocol.INPUT_GRADIENT] = layout.channels_first(np.asarray(input_grad))
            arrays.update({state_key(n): layout.from_keras(k, np.asarray(v.numpy())) for n, v, k in _slots(net)
                           if not v.trainable})
        finally:
            for layer, rate in zip(dropouts, rates):
                layer.rate = rate
            for variable, value_before in zip(state, snapshot):
                variable.assign(value_before)
        arrays[protocol.LOSS] = np.asarray(float(value), dtype=np.float64)
        save_arrays(output_path, arrays)
        return {"loss": float(value)}

    def export_onnx(self, handle: str, path: str, input_shape: list[int], opset: int = 18, exporter: str = "tf2onnx") -> dict:
        """Export through tf2onnx with the canonical channel-first interface.

        The graph takes NCHW input and returns channel-first outputs (transposes inside the
        graph), so both frameworks' ONNX files are called the same way.  Models with a weight
        over ``LARGE_WEIGHT`` elements are traced with their weights as arguments, which become
        ONNX initializers afterwards; the others with their weights as constants.
        """
        import onnx
        import tf2onnx

        if exporter != "tf2onnx":
            raise ValueError(f"unknown Keras ONNX exporter {exporter!r}; use 'tf2onnx'")
        net = self._models.get(handle)
        as_arguments = max(int(np.prod(v.shape)) for v in net.weights) > LARGE_WEIGHT
        trace = _trace_weights_as_arguments if as_arguments else _trace_weights_as_constants
        proto = trace(net, tf.TensorSpec(tuple(input_shape), tf.float32, name="input"), opset)
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
            "input_layout": "NCHW (transposed inside the graph)",
        }
