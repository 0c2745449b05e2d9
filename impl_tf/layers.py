"""Keras layers with PyTorch semantics, one Keras layer per torch module.

Explicit padding lives inside the conv/pool layer (not in a separate
ZeroPadding2D) so that every compared layer has exactly one canonical name.
"""

from __future__ import annotations

import keras
from keras import ops


def _pads(padding) -> tuple[tuple[int, int], tuple[int, int]]:
    """torch-style padding (p, (ph, pw), or ((top, bottom), (left, right))) -> per-side pads."""
    if isinstance(padding, int):
        return ((padding, padding), (padding, padding))
    ph, pw = padding
    as_pair = lambda p: tuple(p) if isinstance(p, (tuple, list)) else (p, p)
    return (as_pair(ph), as_pair(pw))


def _padded_shape(shape, pads):
    (top, bottom), (left, right) = pads
    n, h, w, c = shape
    return (n, None if h is None else h + top + bottom, None if w is None else w + left + right, c)


class _ExplicitPadding:
    """Mixin: pad the input explicitly (torch style) before the wrapped layer's 'valid' op."""

    pad_value = 0.0

    def __init__(self, *args, explicit_padding=0, **kwargs):
        super().__init__(*args, padding="valid", **kwargs)
        self.explicit_padding = _pads(explicit_padding)

    def call(self, inputs):
        (top, bottom), (left, right) = self.explicit_padding
        pads = ((0, 0), (top, bottom), (left, right), (0, 0))
        return super().call(ops.pad(inputs, pads, constant_values=self.pad_value))

    def compute_output_shape(self, input_shape):
        return super().compute_output_shape(_padded_shape(input_shape, self.explicit_padding))

    def get_config(self):
        config = super().get_config()
        config.pop("padding", None)
        return {**config, "explicit_padding": self.explicit_padding}


@keras.saving.register_keras_serializable(package="twinframe")
class PaddedConv2D(_ExplicitPadding, keras.layers.Conv2D):
    """Conv2D with explicit zero padding, as torch's ``Conv2d(padding=p)``."""


@keras.saving.register_keras_serializable(package="twinframe")
class PaddedMaxPool2D(_ExplicitPadding, keras.layers.MaxPooling2D):
    """MaxPooling2D padded with -inf, as torch's ``MaxPool2d(padding=p)`` (zero padding
    would differ wherever all inputs in a window are negative)."""

    pad_value = float("-inf")


def _statistics_dtype(dtype) -> str:
    """float16/bfloat16 statistics in float32, float32 and float64 as they are.  Keras' own
    ``result_type(dtype, "float32")`` gives float32 for float64 on the JAX and torch backends (it
    maps 64-bit results to 32-bit, as JAX does without x64): its BatchNormalization computes a
    float64 model's normalisation in float32 there (docs/pitfalls.md)."""
    dtype = keras.backend.standardize_dtype(dtype)
    return dtype if dtype in ("float32", "float64") else "float32"


@keras.saving.register_keras_serializable(package="twinframe")
class BatchNorm(keras.layers.BatchNormalization):
    """BatchNormalization whose moving variance takes the *unbiased* batch variance.

    torch (and TF 2's fused BN) update running_var with n/(n-1) * var; Keras 3
    uses the biased variance.  Normalisation itself uses the biased variance in all.
    ``synchronized`` (a data-parallel run's --sync-batchnorm): the statistics of the whole batch
    over every replica, as torch's SyncBatchNorm.  Inference too is written here: Keras' own
    computes float64 in float32 on the JAX and torch backends (``_statistics_dtype``).
    """

    def call(self, inputs, training=None, mask=None):
        if mask is not None or self.renorm:
            return super().call(inputs, training=training, mask=mask)
        x = ops.cast(inputs, _statistics_dtype(inputs.dtype))
        if training and self.trainable:
            mean, variance, count = self._batch_moments(x)
            unbiased = variance * count / ops.maximum(count - 1.0, 1.0)
            moving_mean, moving_variance = ops.cast(self.moving_mean, x.dtype), ops.cast(self.moving_variance, x.dtype)
            self.moving_mean.assign(moving_mean * self.momentum + mean * (1.0 - self.momentum))
            self.moving_variance.assign(moving_variance * self.momentum + unbiased * (1.0 - self.momentum))
        else:
            mean, variance = ops.cast(self.moving_mean, x.dtype), ops.cast(self.moving_variance, x.dtype)
        outputs = ops.batch_normalization(
            x, mean, variance, axis=self.axis, offset=ops.cast(self.beta, x.dtype),
            scale=ops.cast(self.gamma, x.dtype), epsilon=self.epsilon,
        )
        return ops.cast(outputs, self.compute_dtype)

    def _batch_moments(self, x):
        """Mean, biased variance and sample count per channel: of this replica's batch, or, when
        synchronized (only under a TensorFlow strategy), of every replica's together
        (impl_tf.distributed)."""
        count = ops.cast(ops.size(x), x.dtype) / ops.cast(ops.shape(x)[self.axis], x.dtype)
        if self.synchronized:
            from impl_tf.distributed import synchronized_moments  # TensorFlow's: only a data-parallel TF run sets it

            moments = synchronized_moments(x, self._reduction_axes, count)
            if moments is not None:
                return moments
        mean, variance = ops.moments(x, axes=self._reduction_axes)
        return mean, variance, count


@keras.saving.register_keras_serializable(package="twinframe")
class Mish(keras.layers.Layer):
    """``x * tanh(softplus(x))``, as the authors' TF layer and torch's nn.Mish."""

    def call(self, inputs):
        return inputs * ops.tanh(ops.softplus(inputs))


@keras.saving.register_keras_serializable(package="twinframe")
class AttentionGate(keras.layers.Layer):
    """Residual attention on ``[mask, trunk]``: ``(1 + mask) * trunk``."""

    def call(self, inputs):
        mask, trunk = inputs
        return (1.0 + mask) * trunk


@keras.saving.register_keras_serializable(package="twinframe")
class FlattenChannelsFirst(keras.layers.Layer):
    """Flatten in torch's (C, H, W) order, so a Dense after it takes canonical weights as they are."""

    def call(self, inputs):
        return ops.reshape(ops.transpose(inputs, (0, 3, 1, 2)), (ops.shape(inputs)[0], -1))

    def compute_output_shape(self, input_shape):
        n, h, w, c = input_shape
        return (n, None if None in (h, w) else h * w * c)


@keras.saving.register_keras_serializable(package="twinframe")
class ClippedReLU(keras.layers.Layer):
    """``min(max(0, x), 1)``; ``ops.clip`` passes the gradient where 0 <= x <= 1, both ends
    included, as torch's ``clamp``.  ``ReLU(max_value=1)`` would not: it drops the gradient at 0."""

    def call(self, inputs):
        return ops.clip(inputs, 0.0, 1.0)


@keras.saving.register_keras_serializable(package="twinframe")
class DyT2D(keras.layers.Layer):
    """Dynamic tanh, torch's DyT2d on NHWC maps: ``tanh(alpha*x) * gamma + beta`` per channel."""

    canonical_weights = (("alpha", "alpha", "identity"), ("beta", "beta", "identity"), ("gamma", "gamma", "identity"))

    def build(self, input_shape):
        channels = (input_shape[-1],)
        self.alpha = self.add_weight(shape=channels, initializer="ones", name="alpha")
        self.beta = self.add_weight(shape=channels, initializer="zeros", name="beta")
        self.gamma = self.add_weight(shape=channels, initializer="ones", name="gamma")

    def call(self, inputs):
        return ops.tanh(inputs * self.alpha) * self.gamma + self.beta


@keras.saving.register_keras_serializable(package="twinframe")
class PixelShuffle(keras.layers.Layer):
    """torch's PixelShuffle(r) on NHWC: input channel ``c*r*r + i*r + j`` goes to output channel
    ``c`` at offset (i, j).  TF's depth_to_space orders channels (i, j, c): the two agree only
    for one output channel."""

    canonical_layout = "channels"  # NHWC in, NHWC out (parity.mappings)

    def __init__(self, factor: int, **kwargs):
        super().__init__(**kwargs)
        self.factor = factor

    def call(self, inputs):
        r = self.factor
        n, h, w = ops.shape(inputs)[:3]
        c = inputs.shape[-1] // (r * r)
        x = ops.reshape(inputs, (n, h, w, c, r, r))
        x = ops.transpose(x, (0, 1, 4, 2, 5, 3))  # (n, h, i, w, j, c)
        return ops.reshape(x, (n, h * r, w * r, c))

    def compute_output_shape(self, input_shape):
        n, h, w, c = input_shape
        r = self.factor
        return (n, None if h is None else h * r, None if w is None else w * r, c // (r * r))

    def get_config(self):
        return {**super().get_config(), "factor": self.factor}


def _adaptive_pool_matrix(in_size, out_size: int, dtype):
    """(out, in) averaging matrix with torch's bins [floor(i*In/Out), ceil((i+1)*In/Out))."""
    i = ops.arange(out_size, dtype="int32")
    start = (i * in_size) // out_size
    end = ((i + 1) * in_size + out_size - 1) // out_size
    position = ops.arange(in_size, dtype="int32")
    inside = ops.logical_and(position[None, :] >= start[:, None], position[None, :] < end[:, None])
    return ops.cast(inside, dtype) / ops.cast(end - start, dtype)[:, None]


@keras.saving.register_keras_serializable(package="twinframe")
class AdaptiveAvgPool2D(keras.layers.Layer):
    """torch's AdaptiveAvgPool2d on NHWC at any input size (Keras has no such layer):
    each output cell averages its torch bin, applied as two averaging matrices."""

    canonical_layout = "channels"  # NHWC in, NHWC out (parity.mappings)

    def __init__(self, output_size: tuple[int, int], **kwargs):
        super().__init__(**kwargs)
        self.output_size = tuple(output_size)

    def call(self, inputs):
        rows = _adaptive_pool_matrix(ops.shape(inputs)[1], self.output_size[0], inputs.dtype)
        cols = _adaptive_pool_matrix(ops.shape(inputs)[2], self.output_size[1], inputs.dtype)
        x = ops.einsum("ih,nhwc->niwc", rows, inputs)
        return ops.einsum("jw,niwc->nijc", cols, x)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], *self.output_size, input_shape[-1])

    def get_config(self):
        return {**super().get_config(), "output_size": self.output_size}


@keras.saving.register_keras_serializable(package="twinframe")
class RepeatChannels(keras.layers.Layer):
    """A one-channel image repeated to ``channels`` channels."""

    canonical_layout = "channels"  # NHWC in, NHWC out (parity.mappings)

    def __init__(self, channels: int, **kwargs):
        super().__init__(**kwargs)
        self.channels = channels

    def call(self, inputs):
        return ops.repeat(inputs, self.channels, axis=-1)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], input_shape[-1] * self.channels)

    def get_config(self):
        return {**super().get_config(), "channels": self.channels}


@keras.saving.register_keras_serializable(package="twinframe")
class Normalize(keras.layers.Layer):
    """``(x - mean) / std`` per channel, with fixed constants (not weights)."""

    def __init__(self, mean, std, **kwargs):
        super().__init__(**kwargs)
        self.mean, self.std = tuple(mean), tuple(std)

    def call(self, inputs):
        mean = ops.convert_to_tensor(self.mean, dtype=inputs.dtype)
        std = ops.convert_to_tensor(self.std, dtype=inputs.dtype)
        return (inputs - mean) / std

    def get_config(self):
        return {**super().get_config(), "mean": self.mean, "std": self.std}


class L2(keras.regularizers.Regularizer):
    """keras.regularizers.L2 with its coefficient made in the weight's dtype.  Keras casts the
    Python float through float32 first (0.01 -> 0.0099999998), a 2e-8 relative error in every
    float64 penalty; torch's twin multiplies by the exact float (found by trajectory parity)."""

    def __init__(self, l2: float):
        self.l2 = float(l2)

    def __call__(self, x):
        return ops.convert_to_tensor(self.l2, dtype=x.dtype) * ops.sum(ops.square(x))

    def get_config(self) -> dict:
        return {"l2": self.l2}


@keras.saving.register_keras_serializable(package="twinframe")
class PaddedDepthwiseConv2D(_ExplicitPadding, keras.layers.DepthwiseConv2D):
    """DepthwiseConv2D with explicit zero padding, as torch's ``Conv2d(C, C, k, padding=p, groups=C)``
    (Keras' 'same' pads a stride-2 conv after only)."""
