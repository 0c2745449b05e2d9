"""The built-in mappings of Keras' stock layers to their PyTorch counterparts' ``state_dict``
(imported where Keras is held).  One small function per layer kind; the rules and the registry
are framework-free (``parity.mappings``).

The torch counterpart each mapping assumes, by Keras layer:

- ``Conv1D/2D/3D`` (groups too), ``Conv*Transpose``: ``nn.Conv*d`` / ``nn.ConvTranspose*d``.
- ``DepthwiseConv1D/2D(depth_multiplier=M)``: ``nn.Conv*d(C, C*M, k, groups=C)``.
- ``SeparableConv1D/2D``: a module with children ``depthwise`` (``groups=C``, no bias) and
  ``pointwise`` (1x1): ``depthwise.weight``, ``pointwise.weight``, ``pointwise.bias``.
- ``Dense`` (any input rank): ``nn.Linear``.  ``Embedding``: ``nn.Embedding``.
- ``BatchNormalization``: ``nn.BatchNorm1d/2d/3d``; ``LayerNormalization``: ``nn.LayerNorm`` over
  the last axis; ``GroupNormalization``: ``nn.GroupNorm``; ``RMSNormalization``: ``nn.RMSNorm``.
- ``MultiHeadAttention``: ``nn.MultiheadAttention(E, H, batch_first=True)`` with key and value
  dims equal to E and ``H * key_dim == E``.
- ``LSTM``, ``GRU`` (``reset_after=True``, Keras' default, is torch's cell), ``SimpleRNN``: the
  one-layer ``nn.LSTM``/``nn.GRU``/``nn.RNN(batch_first=True)``; ``Bidirectional`` of one of
  them: the same with ``bidirectional=True`` (the backward weights are ``*_l0_reverse``).
- ``PReLU(shared_axes=all but the channels)``: ``nn.PReLU(C)``.
"""

from __future__ import annotations

import functools

import numpy as np
from keras import layers

from parity.mappings import (
    WeightRule, conv_kernel, dense_kernel, depthwise_rule, register_keras_layer, reshaped, same, split_rows,
    summed_bias,
)


def _optional(layer, attribute: str, rule: WeightRule) -> list[WeightRule]:
    return [rule] if getattr(layer, attribute, None) is not None else []


def _conv(layer) -> list[WeightRule]:
    rank = len(layer.kernel_size)
    return [conv_kernel("weight", "kernel", rank), *_optional(layer, "bias", same("bias", "bias"))]


def _depthwise(layer) -> list[WeightRule]:
    return [depthwise_rule("weight", "kernel", tuple(layer.kernel.shape)), *_optional(layer, "bias", same("bias", "bias"))]


def _separable(layer) -> list[WeightRule]:
    rank = len(layer.kernel_size)
    return [depthwise_rule("depthwise.weight", "depthwise_kernel", tuple(layer.depthwise_kernel.shape)),
            conv_kernel("pointwise.weight", "pointwise_kernel", rank),
            *_optional(layer, "bias", same("pointwise.bias", "bias"))]


def _dense(layer) -> list[WeightRule]:
    return [dense_kernel("weight", "kernel"), *_optional(layer, "bias", same("bias", "bias"))]


def _batch_norm(layer) -> list[WeightRule]:
    return [*_optional(layer, "gamma", same("weight", "gamma")), *_optional(layer, "beta", same("bias", "beta")),
            same("running_mean", "moving_mean"), same("running_var", "moving_variance")]


def _scale_shift(layer) -> list[WeightRule]:
    """LayerNormalization, GroupNormalization: gamma/beta are torch's weight/bias."""
    return [*_optional(layer, "gamma", same("weight", "gamma")), *_optional(layer, "beta", same("bias", "beta"))]


def _prelu(layer) -> list[WeightRule]:
    shape = tuple(layer.alpha.shape)
    return [reshaped("weight", "alpha", (int(np.prod(shape)),), shape)]


def _attention(layer) -> list[WeightRule]:
    """torch's fused in-projection [q; k; v] (3E, E) <-> three (E, heads, key_dim) kernels;
    torch's out_proj (E, heads*key_dim) <-> Keras' (heads, key_dim, E)."""
    query = layer._query_dense.kernel
    width, heads, key_dim = (int(d) for d in query.shape)
    projections = ("_query_dense", "_key_dense", "_value_dense")

    def kernel_to_keras(block):
        return np.ascontiguousarray(block.T.reshape(width, heads, key_dim))

    def kernel_from_keras(kernel):
        return kernel.reshape(width, heads * key_dim).T

    output_width = int(layer._output_dense.kernel.shape[-1])
    rules = [split_rows("in_proj_weight", tuple(f"{p}.kernel" for p in projections), kernel_to_keras, kernel_from_keras),
             WeightRule(("out_proj.weight",), ("_output_dense.kernel",),
                        lambda w: (np.ascontiguousarray(w.T.reshape(heads, key_dim, output_width)),),
                        lambda k: (np.ascontiguousarray(k.reshape(heads * key_dim, output_width).T),))]
    if layer._query_dense.bias is not None:
        rules += [split_rows("in_proj_bias", tuple(f"{p}.bias" for p in projections),
                             lambda b: np.ascontiguousarray(b.reshape(heads, key_dim)), lambda b: b.reshape(-1)),
                  same("out_proj.bias", "_output_dense.bias")]
    return rules


def _attention_scale_in_float64(layer) -> None:
    """Keras' TF attention multiplies by ``tf.cast(scale, float64)`` of a Python float, which TF
    first makes a float32 tensor: 1/sqrt(key_dim) rounded to float32 (1.7e-8 off at key_dim 8)
    in a float64 model.  A NumPy float64 scale keeps its precision."""
    layer._inverse_sqrt_key_dim = np.float64(1.0) / np.sqrt(np.float64(layer._key_dim))


def _options_in_float64(*options: str):
    """A float64 model's layer whose Python float options reach TensorFlow as float32 tensors
    first (ReLU's max_value 0.1 is 1.5e-9 off; Rescaling's offset 5.7e-8): as NumPy float64
    they keep their precision (docs/pitfalls.md 32)."""
    def prepare(layer) -> None:
        for option in options:
            value = getattr(layer, option, None)
            if isinstance(value, float):
                setattr(layer, option, np.float64(value))
    return prepare


# -- recurrent layers: torch's gates and biases ---------------------------------------------

def _swap_first_two_gates(array: np.ndarray) -> np.ndarray:
    """torch GRU gates (r, z, n) <-> Keras (z, r, h), blocks along axis 0 (its own inverse)."""
    r, z, n = np.split(array, 3, axis=0)
    return np.ascontiguousarray(np.concatenate([z, r, n], axis=0))


def _transposed(canonical: str, variable: str, reorder=lambda a: a) -> WeightRule:
    """torch (gates*H, in) <-> Keras (in, gates*H), gate blocks reordered."""
    return WeightRule((canonical,), (variable,), lambda w: (np.ascontiguousarray(reorder(w).T),),
                      lambda k: (reorder(np.ascontiguousarray(k.T)),))


def _recurrent(layer, prefix: str = "", suffix: str = "_l0") -> list[WeightRule]:
    """LSTM (gates i, f, g, o in both), GRU, SimpleRNN; ``prefix`` reaches a Bidirectional's
    forward or backward layer, ``suffix`` is torch's ``_l0`` or ``_l0_reverse``."""
    cell = layer.cell
    gru = isinstance(layer, layers.GRU)
    reorder = _swap_first_two_gates if gru else (lambda a: np.ascontiguousarray(a))
    at = f"{prefix}cell."
    rules = [_transposed(f"weight_ih{suffix}", f"{at}kernel", reorder),
             _transposed(f"weight_hh{suffix}", f"{at}recurrent_kernel", reorder)]
    if cell.bias is None:
        return rules
    names = (f"bias_ih{suffix}", f"bias_hh{suffix}")
    if gru and cell.reset_after:  # Keras keeps both biases, as rows: exact both ways
        rules.append(WeightRule(names, (f"{at}bias",),
                                lambda bi, bh: (np.stack([reorder(bi), reorder(bh)]),),
                                lambda bias: (reorder(bias[0]), reorder(bias[1]))))
    else:  # one Keras bias (reset_after=False computes another cell: the check will say so)
        rules.append(summed_bias(names, f"{at}bias", reorder, reorder))
    return rules


def _bidirectional(layer) -> list[WeightRule]:
    return [*_recurrent(layer.forward_layer, "forward_layer."),
            *_recurrent(layer.backward_layer, "backward_layer.", "_l0_reverse")]


def _embedding(layer) -> list[WeightRule]:
    return [same("weight", "embeddings")]


def _rms(layer) -> list[WeightRule]:
    return [same("weight", "scale")]


def register_builtins() -> None:
    register = functools.partial(register_keras_layer, replace=False)
    for cls in (layers.Conv1D, layers.Conv2D, layers.Conv3D,
                layers.Conv1DTranspose, layers.Conv2DTranspose, layers.Conv3DTranspose):
        register(cls, _conv, "channels")
    for cls in (layers.DepthwiseConv1D, layers.DepthwiseConv2D):
        register(cls, _depthwise, "channels")
    for cls in (layers.SeparableConv1D, layers.SeparableConv2D):
        register(cls, _separable, "channels")
    register(layers.Dense, _dense, "plain")
    register(layers.BatchNormalization, _batch_norm, "channels")
    register(layers.LayerNormalization, _scale_shift, "plain")
    register(layers.GroupNormalization, _scale_shift, "channels")
    register(layers.RMSNormalization, _rms, "plain")
    register(layers.Embedding, _embedding, "plain")
    register(layers.MultiHeadAttention, _attention, "plain", call_order=(0, 2, 1),
             prepare_float64=_attention_scale_in_float64)
    for cls in (layers.LSTM, layers.GRU, layers.SimpleRNN):
        register(cls, _recurrent, "plain")
    register(layers.Bidirectional, _bidirectional, "plain")
    register(layers.PReLU, _prelu, "same_as_input")
    for cls in (layers.MaxPooling1D, layers.MaxPooling2D, layers.MaxPooling3D,
                layers.AveragePooling1D, layers.AveragePooling2D, layers.AveragePooling3D,
                layers.UpSampling1D, layers.UpSampling2D, layers.UpSampling3D,
                layers.ZeroPadding1D, layers.ZeroPadding2D, layers.ZeroPadding3D,
                layers.Cropping1D, layers.Cropping2D, layers.Cropping3D, layers.Resizing,
                layers.GlobalAveragePooling1D, layers.GlobalAveragePooling2D, layers.GlobalAveragePooling3D,
                layers.GlobalMaxPooling1D, layers.GlobalMaxPooling2D, layers.GlobalMaxPooling3D,
                layers.SpatialDropout1D, layers.SpatialDropout2D, layers.SpatialDropout3D):
        register(cls, layout="channels")
    register(layers.ReLU, layout="same_as_input",
             prepare_float64=_options_in_float64("max_value", "negative_slope", "threshold"))
    register(layers.Rescaling, layout="same_as_input", prepare_float64=_options_in_float64("scale", "offset"))
    register(layers.Flatten, layout="plain")
    for cls in (layers.Activation, layers.LeakyReLU, layers.ELU, layers.Softmax, layers.Dropout,
                layers.Add, layers.Subtract, layers.Multiply, layers.Average, layers.Maximum, layers.Minimum,
                layers.Concatenate, layers.Identity, layers.GaussianNoise, layers.GaussianDropout,
                layers.AlphaDropout, layers.ActivityRegularization):
        register(cls, layout="same_as_input")


register_builtins()
