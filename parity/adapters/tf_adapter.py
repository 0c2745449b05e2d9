"""Keras 3 on the TensorFlow backend: the parity protocol's Keras adapter with TensorFlow's
settings, gradients (a GradientTape) and ONNX export (tf2onnx).  Imported only where TensorFlow
is held; everything backend-free is ``keras_adapter``'s.
"""

from __future__ import annotations

import inspect
import os
import platform

import numpy as np
import tensorflow as tf
import keras

from parity import protocol
from parity.adapters import common
from parity.adapters import keras_model as km
from parity.adapters.keras_adapter import KerasAdapter, _Built
from canon.files import atomic_write
from canon import layout


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



# -- ONNX ----------------------------------------------------------------------

# Above this many elements in one weight, or in all of them, tf2onnx's constant handling is the
# bottleneck (VGG's 25088x4096 Dense alone: 75 s and 15 GB; ViT-B/16's 86 M parameters in 150
# tensors: 16 GB); below it, constants are the faster path (MeDiANet's ~1000 small tensors export
# twice as fast as constants than as arguments).
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


# -- the ops ------------------------------------------------------------------
class TfAdapter(KerasAdapter):
    framework = "tf"

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

    def differentiate(self, loss_of, variables, inputs, state):
        with tf.GradientTape() as tape:
            for tensor in inputs:
                tape.watch(tensor)
            value = loss_of(inputs)
        gradients = tape.gradient(value, list(variables) + list(inputs))
        # an Embedding's gradient is sparse (IndexedSlices): made dense, as torch's are
        dense = [None if g is None else tf.convert_to_tensor(g) for g in gradients]
        return value, dense[:len(variables)], dense[len(variables):]

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
