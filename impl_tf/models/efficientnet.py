"""EfficientNet-B0..B7 (timm semantics and names). Twin: impl_torch/models/efficientnet.py.

Each BatchNorm followed by SiLU is two layers, ``bn1`` and ``bn1.act`` (timm's name for the
activation inside its BatchNormAct2d).  Padding is explicit and symmetric (k//2), as torch's:
Keras' 'same' would pad a stride-2 conv on an even input after only.
"""

from __future__ import annotations

import keras

from impl_tf import initializers as init
from impl_tf.layers import BatchNorm, PaddedConv2D, PaddedDepthwiseConv2D
from impl_tf.registry import register_family
from canon.models.efficientnet import (
    BN_EPSILON, BN_TORCH_MOMENTUM, BlockPlan, EfficientNetConfig, block_plan, head_channels, stem_channels,
)


def _bn(x, name: str):
    return BatchNorm(momentum=1.0 - BN_TORCH_MOMENTUM, epsilon=BN_EPSILON, name=name)(x)


def _bn_act(x, name: str):
    return keras.layers.Activation("silu", name=f"{name}.act")(_bn(x, name))


def _conv(x, filters: int, kernel: int, name: str, stride: int = 1):
    """timm's init: N(0, 2/fan_out), fan_out = kh * kw * filters (Keras' fan_out of the kernel)."""
    return PaddedConv2D(filters, kernel, strides=stride, explicit_padding=kernel // 2, use_bias=False,
                        kernel_initializer=init.kaiming_normal("fan_out"), name=name)(x)


def _conv_dw(x, plan: BlockPlan, name: str):
    """Keras' depthwise fan_out is kh * kw (multiplier 1), timm's grouped fan_out per group."""
    return PaddedDepthwiseConv2D(plan.kernel, strides=plan.stride, explicit_padding=plan.padding, use_bias=False,
                                 depthwise_initializer=init.kaiming_normal("fan_out"), name=name)(x)


def squeeze_excite(x, channels: int, reduced: int, n: str):
    s = keras.layers.GlobalAveragePooling2D(keepdims=True, name=f"{n}.pool")(x)
    s = keras.layers.Conv2D(reduced, 1, kernel_initializer=init.kaiming_normal("fan_out"), name=f"{n}.conv_reduce")(s)
    s = keras.layers.Activation("silu", name=f"{n}.act1")(s)
    s = keras.layers.Conv2D(channels, 1, kernel_initializer=init.kaiming_normal("fan_out"), name=f"{n}.conv_expand")(s)
    s = keras.layers.Activation("sigmoid", name=f"{n}.gate")(s)
    return keras.layers.Multiply(name=f"{n}.mul")([x, s])  # (N, H, W, C) x (N, 1, 1, C)


def depthwise_separable(x, plan: BlockPlan):
    n = plan.name
    y = _bn_act(_conv_dw(x, plan, f"{n}.conv_dw"), f"{n}.bn1")
    y = squeeze_excite(y, plan.in_channels, plan.se_channels, f"{n}.se")
    y = _bn(_conv(y, plan.out_channels, 1, f"{n}.conv_pw"), f"{n}.bn2")
    return keras.layers.Add(name=f"{n}.add")([y, x]) if plan.has_skip else y


def inverted_residual(x, plan: BlockPlan):
    n = plan.name
    y = _bn_act(_conv(x, plan.mid_channels, 1, f"{n}.conv_pw"), f"{n}.bn1")
    y = _bn_act(_conv_dw(y, plan, f"{n}.conv_dw"), f"{n}.bn2")
    y = squeeze_excite(y, plan.mid_channels, plan.se_channels, f"{n}.se")
    y = _bn(_conv(y, plan.out_channels, 1, f"{n}.conv_pwl"), f"{n}.bn3")
    return keras.layers.Add(name=f"{n}.add")([y, x]) if plan.has_skip else y


BLOCKS = {"ds": depthwise_separable, "ir": inverted_residual}


@register_family("efficientnet")
def EfficientNet(config: EfficientNetConfig) -> keras.Model:
    inputs = keras.Input((None, None, config.in_channels), name="input")
    x = _bn_act(_conv(inputs, stem_channels(config), 3, "conv_stem", stride=2), "bn1")
    for stage in block_plan(config):
        for plan in stage:
            x = BLOCKS[plan.block](x, plan)
    x = _bn_act(_conv(x, head_channels(config), 1, "conv_head"), "bn2")
    x = keras.layers.GlobalAveragePooling2D(keepdims=True, name="global_pool.pool")(x)
    x = keras.layers.Flatten(name="global_pool.flatten")(x)
    # timm's Linear init U(+-1/sqrt(out_features)): Keras' fan_out of the (in, out) kernel
    outputs = keras.layers.Dense(
        config.num_classes, name="classifier",
        kernel_initializer=keras.initializers.VarianceScaling(1.0 / 3.0, mode="fan_out", distribution="uniform"),
    )(x)
    return keras.Model(inputs, outputs, name="efficientnet")
