"""Keras twins of torch_planted, each with one known porting bug planted in one layer; with
``faithful=True`` the correct port (which must not be blamed)."""

from __future__ import annotations

import keras
import numpy as np
from keras import layers

from parity.mappings import WeightRule, register_keras_layer
from parity.adapters.keras_mappings import _recurrent


class NaiveGRU(layers.GRU):
    """A GRU whose weights a hurried converter copied in torch's gate order (r, z, n)."""


class NaiveLSTM(layers.LSTM):
    """An LSTM whose converter kept torch's bias_ih and dropped bias_hh."""


def _unordered(layer) -> list[WeightRule]:
    return [WeightRule((f"weight_ih_l0",), ("cell.kernel",), lambda w: (w.T.copy(),), lambda k: (k.T.copy(),)),
            WeightRule((f"weight_hh_l0",), ("cell.recurrent_kernel",), lambda w: (w.T.copy(),), lambda k: (k.T.copy(),)),
            WeightRule(("bias_ih_l0", "bias_hh_l0"), ("cell.bias",), lambda bi, bh: (np.stack([bi, bh]),),
                       lambda b: (b[0].copy(), b[1].copy()))]


def _first_bias_only(layer) -> list[WeightRule]:
    *kept, _ = _recurrent(layer)
    return kept + [WeightRule(("bias_ih_l0", "bias_hh_l0"), ("cell.bias",), lambda bi, bh: (bi.copy(),),
                              lambda b: (b.copy(), np.zeros_like(b)))]


register_keras_layer(NaiveGRU, _unordered, "plain")
register_keras_layer(NaiveLSTM, _first_bias_only, "plain")


class UntransposedDense(layers.Layer):
    """A Dense whose port copies torch's (out, in) weight into the (in, out) kernel as it is."""

    canonical_weights = (("kernel", "weight", "identity"), ("bias", "bias", "identity"))
    canonical_layout = "plain"

    def __init__(self, units: int, **kwargs):
        super().__init__(**kwargs)
        self.units = units

    def build(self, input_shape):
        self.kernel = self.add_weight(shape=(input_shape[-1], self.units), name="kernel")
        self.bias = self.add_weight(shape=(self.units,), initializer="zeros", name="bias")

    def call(self, x):
        return x @ self.kernel + self.bias


def _conv(filters: int = 4, name: str = "0"):
    return layers.Conv2D(filters, 3, padding="same", name=name)


def _image(shape=(8, 10, 3)):
    return keras.Input(shape)


def _model(name, inputs, outputs):
    return keras.Model(inputs, outputs, name=name)


def create(name: str, faithful: bool = False) -> keras.Model:
    fix = faithful
    if name in ("norm_epsilon", "bn_momentum_convention", "bn_running_variance_biased"):
        inputs = _image()
        options = {"epsilon": 1e-5, "momentum": 0.9}
        if not fix and name == "norm_epsilon":
            options = {}  # Keras' defaults: epsilon 1e-3, momentum 0.99
        if not fix and name == "bn_momentum_convention":
            options = {"epsilon": 1e-5, "momentum": 0.1}  # torch's number, Keras' meaning
        return _model(name, inputs, layers.BatchNormalization(name="1", **options)(_conv()(inputs)))
    if name == "gelu_approximation":
        inputs = keras.Input((5, 6))
        act = layers.Activation(lambda t: keras.activations.gelu(t, approximate=not fix), name="1")
        return _model(name, inputs, act(layers.Dense(8, name="0")(inputs)))
    if name == "same_padding_asymmetry":
        inputs = _image()
        if fix:
            padded = layers.ZeroPadding2D(1, name="0_pad")(inputs)
            return _model(name, inputs, layers.Conv2D(4, 3, strides=2, name="0")(padded))
        return _model(name, inputs, layers.Conv2D(4, 3, strides=2, padding="same", name="0")(inputs))
    if name == "maxpool_padding_value":
        inputs = _image()
        x = _conv()(inputs)
        if fix:  # torch's -inf padding on both sides ('same' at stride 2 would pad only after)
            pad = layers.Lambda(lambda t: keras.ops.pad(t, [[0, 0], [1, 1], [1, 1], [0, 0]], constant_values=-np.inf),
                                name="1_pad")
            pad.canonical_layout = "channels"
            return _model(name, inputs, layers.MaxPooling2D(3, 2, name="1")(pad(x)))
        return _model(name, inputs, layers.MaxPooling2D(3, 2, name="1")(layers.ZeroPadding2D(1, name="1_pad")(x)))
    if name == "avgpool_count_include_pad":
        inputs = _image()
        x = _conv()(inputs)
        if fix:
            return _model(name, inputs, layers.AveragePooling2D(3, 1, name="1")(layers.ZeroPadding2D(1, name="1_pad")(x)))
        return _model(name, inputs, layers.AveragePooling2D(3, 1, padding="same", name="1")(x))
    if name == "flatten_order":
        inputs = _image((4, 6, 3))
        x = _conv(2)(inputs)
        if fix:
            permute = layers.Permute((3, 1, 2), name="1_channels_first")
            permute.canonical_layout = "plain"  # NHWC permuted to NCHW: torch's axes
            x = permute(x)
        return _model(name, inputs, layers.Dense(3, name="2")(layers.Flatten(name="1")(x)))
    if name == "dense_kernel_transposed":
        inputs = keras.Input((6,))
        layer = layers.Dense(6, name="0") if fix else UntransposedDense(6, name="0")
        return _model(name, inputs, layer(inputs))
    if name == "softmax_axis":
        inputs = _image()
        return _model(name, inputs, layers.Softmax(axis=-1 if fix else 1, name="1")(_conv()(inputs)))
    if name == "leaky_relu_slope":
        inputs = _image()
        slope = {"negative_slope": 0.01} if fix else {}
        return _model(name, inputs, layers.LeakyReLU(name="1", **slope)(_conv()(inputs)))
    if name in ("gru_reset_after", "gru_gate_order", "lstm_bias"):
        inputs = keras.Input((6, 5))
        if name == "lstm_bias":
            cls = layers.LSTM if fix else NaiveLSTM
            return _model(name, inputs, cls(4, return_sequences=True, name="rnn")(inputs))
        if name == "gru_gate_order" and not fix:
            return _model(name, inputs, NaiveGRU(4, return_sequences=True, name="rnn")(inputs))
        return _model(name, inputs, layers.GRU(4, return_sequences=True, reset_after=fix or name != "gru_reset_after",
                                               name="rnn")(inputs))
    if name == "resize_mode":
        inputs = _image()
        # Keras' bilinear is torch's align_corners=False: no faithful twin of align_corners=True
        return _model(name, inputs, layers.UpSampling2D(2, interpolation="bilinear", name="1")(_conv()(inputs)))
    if name == "uncatalogued":
        inputs = _image()
        return _model(name, inputs, layers.Activation("sigmoid" if fix else "tanh", name="1")(_conv()(inputs)))
    raise KeyError(name)
