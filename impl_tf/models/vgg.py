"""VGG 11/13/16/19 (seed 002; torchvision names). Twin: impl_torch/models/vgg.py."""

from __future__ import annotations

import keras

from impl_tf import initializers as init
from impl_tf.layers import AdaptiveAvgPool2D, FlattenChannelsFirst, PaddedConv2D
from impl_tf.registry import register_family
from canon.models import vgg as spec
from canon.models.vgg import VGGConfig


def _dense(units: int, name: str) -> keras.layers.Dense:
    return keras.layers.Dense(units, kernel_initializer=init.normal(spec.LINEAR_INIT_STD), name=name)


@register_family("vgg")
def VGG(config: VGGConfig) -> keras.Model:
    inputs = keras.Input((None, None, config.in_channels), name="input")
    x = inputs
    for index, (kind, out) in enumerate(spec.feature_layers(config)):
        name = f"features.{index}"
        if kind == "conv":
            x = PaddedConv2D(out, 3, explicit_padding=1, kernel_initializer=init.kaiming_normal(), name=name)(x)
        elif kind == "relu":
            x = keras.layers.ReLU(name=name)(x)
        else:
            x = keras.layers.MaxPooling2D(2, 2, name=name)(x)
    x = AdaptiveAvgPool2D(spec.POOL_SIZE, name="avgpool")(x)
    x = FlattenChannelsFirst(name="flatten")(x)  # torch's (C, H, W) order: canonical Linear rows as they are
    x = keras.layers.ReLU(name="classifier.1")(_dense(spec.HIDDEN, "classifier.0")(x))
    x = keras.layers.Dropout(spec.DROPOUT, name="classifier.2")(x)
    x = keras.layers.ReLU(name="classifier.4")(_dense(spec.HIDDEN, "classifier.3")(x))
    x = keras.layers.Dropout(spec.DROPOUT, name="classifier.5")(x)
    outputs = _dense(config.num_classes, "classifier.6")(x)
    return keras.Model(inputs, outputs, name=f"vgg{config.depth}")
