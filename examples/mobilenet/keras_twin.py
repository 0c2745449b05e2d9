"""The two models with stock Keras layers.  DepthwiseConv2D is torch's grouped conv with
groups == channels.  The stride-2 depthwise conv pads explicitly (ZeroPadding2D, then 'valid'):
Keras' 'same' at stride 2 pads only after, torch's padding=1 on both sides."""

import keras
from keras import layers


def _mobilenet_block(name: str, channels: int = 8, expand: int = 3) -> keras.Model:
    hidden = channels * expand
    inputs = keras.Input((None, None, channels))
    y = layers.Conv2D(hidden, 1, use_bias=False, name="expand")(inputs)
    y = layers.GroupNormalization(4, epsilon=1e-5, name="expand_norm")(y)
    y = layers.ReLU(max_value=6.0, name="expand_act")(y)
    y = layers.DepthwiseConv2D(3, padding="same", use_bias=False, name="depthwise")(y)
    y = layers.GroupNormalization(4, epsilon=1e-5, name="depthwise_norm")(y)
    y = layers.ReLU(max_value=6.0, name="depthwise_act")(y)
    x = layers.Add(name="residual")([inputs, layers.Conv2D(channels, 1, use_bias=False, name="project")(y)])
    x = layers.ZeroPadding2D(1, name="downsample_pad")(x)
    return keras.Model(inputs, layers.DepthwiseConv2D(3, strides=2, name="downsample")(x), name=name)


def _signal_net(name: str, channels: int = 2, num_classes: int = 4) -> keras.Model:
    inputs = keras.Input((None, channels))
    x = layers.Conv1D(8, 5, padding="same", name="conv1")(inputs)
    x = layers.ReLU(name="act1")(x)
    x = layers.Conv1D(12, 3, dilation_rate=2, padding="same", name="conv2")(x)
    x = layers.ReLU(name="act2")(x)
    x = layers.GlobalAveragePooling1D(keepdims=True, name="pool")(x)  # (N, 1, C), as AdaptiveAvgPool1d(1)
    x = layers.Flatten(name="flatten")(x)
    return keras.Model(inputs, layers.Dense(num_classes, name="fc")(x), name=name)


def create(name: str = "mobilenet_block", **config) -> keras.Model:
    return {"mobilenet_block": _mobilenet_block, "conv1d": _signal_net}[name](name, **config)
