"""AlexNet (seed 002; torchvision names). Twin: impl_torch/models/alexnet.py."""

from __future__ import annotations

import keras

from impl_tf import initializers as init
from impl_tf.layers import FlattenChannelsFirst, PaddedConv2D
from impl_tf.registry import register_family
from canon.models import alexnet as spec
from canon.models.alexnet import AlexNetConfig


def _feature(layer, name: str) -> keras.layers.Layer:
    kind = layer[0]
    if kind == "conv":
        _, out, kernel, stride, padding = layer
        return PaddedConv2D(out, kernel, strides=stride, explicit_padding=padding,
                            kernel_initializer=init.kaiming_normal(), name=name)
    if kind == "maxpool":  # no padding, so torch's and Keras' pools agree as they are
        return keras.layers.MaxPooling2D(layer[1], layer[2], name=name)
    return keras.layers.ReLU(name=name)


def _dense(units: int, name: str) -> keras.layers.Dense:
    return keras.layers.Dense(units, kernel_initializer=init.kaiming_normal(), name=name)


@register_family("alexnet")
def AlexNet(config: AlexNetConfig) -> keras.Model:
    spec.check_input_size(*config.input_size)
    inputs = keras.Input((*config.input_size, config.in_channels), name="input")
    x = inputs
    for index, layer in enumerate(spec.FEATURES):
        x = _feature(layer, f"features.{index}")(x)
    # torch flattens (C, H, W): flattening in that order keeps the Linear's canonical rows as they are
    x = FlattenChannelsFirst(name="flatten")(x)
    x = keras.layers.Dropout(spec.DROPOUT, name="classifier.0")(x)
    x = keras.layers.ReLU(name="classifier.2")(_dense(spec.HIDDEN, "classifier.1")(x))
    x = keras.layers.Dropout(spec.DROPOUT, name="classifier.3")(x)
    x = keras.layers.ReLU(name="classifier.5")(_dense(spec.HIDDEN, "classifier.4")(x))
    outputs = _dense(config.num_classes, "classifier.6")(x)
    return keras.Model(inputs, outputs, name="alexnet")
