"""One-layer Keras models mirroring torch_probes; ``naive=True`` builds the port a hurried
user would write, so the tests can show the difference being caught."""

import keras
import tensorflow as tf

from impl_tf.layers import AdaptiveAvgPool2D, ClippedReLU, PixelShuffle


def _depth_to_space(factor: int) -> keras.layers.Layer:
    layer = keras.layers.Lambda(lambda x: tf.nn.depth_to_space(x, factor), name="0")
    layer.canonical_layout = "channels"  # a Lambda's layout cannot be told from its kind
    return layer


def create(name: str, channels: int = 4, output_size=(7, 7), factor: int = 2, naive: bool = False) -> keras.Model:
    inputs = keras.Input((None, None, channels))
    if name == "adaptive_pool":
        layer = AdaptiveAvgPool2D(tuple(output_size), name="0")
    elif name == "pixel_shuffle":
        layer = _depth_to_space(factor) if naive else PixelShuffle(factor, name="0")
    elif name == "clipped_relu":
        layer = keras.layers.ReLU(max_value=1.0, name="0") if naive else ClippedReLU(name="0")
    else:
        raise ValueError(f"unknown probe {name!r}")
    return keras.Model(inputs, layer(inputs))
