"""DenseNet-121 (torchvision semantics and names). Twin: impl_torch/models/densenet.py."""

from __future__ import annotations

import keras

from impl_tf import initializers as init
from impl_tf.layers import BatchNorm, PaddedConv2D, PaddedMaxPool2D
from impl_tf.registry import register_family
from canon.models.densenet import BN_EPSILON, BN_TORCH_MOMENTUM, DenseNetConfig, block_plan


def _bn(name: str) -> BatchNorm:
    return BatchNorm(momentum=1.0 - BN_TORCH_MOMENTUM, epsilon=BN_EPSILON, name=name)


def _conv(filters: int, kernel: int, name: str, stride: int = 1, padding: int = 0) -> PaddedConv2D:
    return PaddedConv2D(filters, kernel, strides=stride, explicit_padding=padding, use_bias=False,
                        kernel_initializer=init.kaiming_normal("fan_in"), name=name)


def dense_layer(x, config: DenseNetConfig, n: str):
    y = _conv(config.bn_size * config.growth_rate, 1, f"{n}.conv1")(
        keras.layers.ReLU(name=f"{n}.relu1")(_bn(f"{n}.norm1")(x)))
    y = _conv(config.growth_rate, 3, f"{n}.conv2", padding=1)(
        keras.layers.ReLU(name=f"{n}.relu2")(_bn(f"{n}.norm2")(y)))
    return keras.layers.Concatenate(axis=-1, name=f"{n}.concat")([x, y])


def transition(x, out_channels: int, n: str):
    x = _conv(out_channels, 1, f"{n}.conv")(keras.layers.ReLU(name=f"{n}.relu")(_bn(f"{n}.norm")(x)))
    return keras.layers.AveragePooling2D(2, 2, name=f"{n}.pool")(x)  # no padding: torch and Keras agree


def densenet_logits(x, config: DenseNetConfig, prefix: str = ""):
    """The DenseNet graph on ``x``; ``prefix`` nests its names (AECNN's ``classifier.``)."""
    f = f"{prefix}features"
    x = _conv(config.num_init_features, 7, f"{f}.conv0", stride=2, padding=3)(x)
    x = keras.layers.ReLU(name=f"{f}.relu0")(_bn(f"{f}.norm0")(x))
    x = PaddedMaxPool2D(3, strides=2, explicit_padding=1, name=f"{f}.pool0")(x)
    for plan in block_plan(config):
        for j in range(plan.num_layers):
            x = dense_layer(x, config, f"{f}.denseblock{plan.index}.denselayer{j + 1}")
        if plan.transition_out is not None:
            x = transition(x, plan.transition_out, f"{f}.transition{plan.index}")
    x = keras.layers.ReLU(name=f"{prefix}relu")(_bn(f"{f}.norm5")(x))
    x = keras.layers.GlobalAveragePooling2D(keepdims=True, name=f"{prefix}avgpool")(x)
    x = keras.layers.Flatten(name=f"{prefix}flatten")(x)
    return keras.layers.Dense(
        config.num_classes, kernel_initializer=init.torch_default_kernel(), name=f"{prefix}classifier",
    )(x)


@register_family("densenet")
def DenseNet(config: DenseNetConfig) -> keras.Model:
    inputs = keras.Input((None, None, config.in_channels), name="input")
    return keras.Model(inputs, densenet_logits(inputs, config), name="densenet")
