"""ResNet-18/34 (torchvision semantics; layer names match torchvision checkpoints)."""

from __future__ import annotations

import keras

from impl_tf import initializers as init
from impl_tf.layers import BatchNorm, PaddedConv2D, PaddedMaxPool2D
from impl_tf.registry import register_family
from canon.models.resnet import BN_EPSILON, BN_TORCH_MOMENTUM, FC_INIT_STD, STAGE_WIDTHS, BasicBlockPlan, ResNetConfig, block_plan


def _bn(name: str) -> BatchNorm:
    return BatchNorm(momentum=1.0 - BN_TORCH_MOMENTUM, epsilon=BN_EPSILON, name=name)


def _conv(filters: int, kernel: int, stride: int, padding: int, name: str) -> PaddedConv2D:
    return PaddedConv2D(
        filters, kernel, strides=stride, explicit_padding=padding, use_bias=False,
        kernel_initializer=init.kaiming_normal(), name=name,
    )


def basic_block(x, plan: BasicBlockPlan):
    n = plan.name
    y = _conv(plan.out_channels, 3, plan.stride, 1, f"{n}.conv1")(x)
    y = _bn(f"{n}.bn1")(y)
    y = keras.layers.ReLU(name=f"{n}.relu1")(y)
    y = _conv(plan.out_channels, 3, 1, 1, f"{n}.conv2")(y)
    y = _bn(f"{n}.bn2")(y)
    if plan.has_downsample:
        shortcut = _conv(plan.out_channels, 1, plan.stride, 0, f"{n}.downsample.0")(x)
        shortcut = _bn(f"{n}.downsample.1")(shortcut)
    else:
        shortcut = x
    y = keras.layers.Add(name=f"{n}.add")([y, shortcut])
    return keras.layers.ReLU(name=f"{n}.relu2")(y)


@register_family("resnet")
def ResNet(config: ResNetConfig) -> keras.Model:
    inputs = keras.Input((None, None, config.in_channels), name="input")
    x = _conv(STAGE_WIDTHS[0], 7, 2, 3, "conv1")(inputs)
    x = _bn("bn1")(x)
    x = keras.layers.ReLU(name="relu")(x)
    x = PaddedMaxPool2D(3, strides=2, explicit_padding=1, name="maxpool")(x)
    for plan in block_plan(config):
        x = basic_block(x, plan)
    x = keras.layers.GlobalAveragePooling2D(keepdims=True, name="avgpool")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    outputs = keras.layers.Dense(
        config.num_classes, kernel_initializer=init.normal(FC_INIT_STD),
        bias_initializer="zeros", name="fc",
    )(x)
    return keras.Model(inputs, outputs, name=f"resnet{sum(config.blocks) * 2 + 2}")
