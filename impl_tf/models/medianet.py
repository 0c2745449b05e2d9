"""MeDiANet with the authors' TensorFlow semantics (docs/medianet.md). Twin: impl_torch/models/medianet.py."""

from __future__ import annotations

import keras

from impl_tf.layers import L2, AttentionGate, BatchNorm, FlattenChannelsFirst, Mish
from impl_tf.registry import register_family
from canon.models import medianet as spec
from canon.models.medianet import DiETPlan, MeDiANetConfig, ResPlan


def _bn(name: str) -> BatchNorm:
    return BatchNorm(momentum=spec.BN_KERAS_MOMENTUM, epsilon=spec.BN_EPSILON, name=name)


def _act(kind: str, name: str) -> keras.layers.Layer:
    return Mish(name=name) if kind == "mish" else keras.layers.ReLU(name=name)


def _conv(filters: int, kernel: int, name: str, stride: int = 1, dilation: int = 1, l2: float | None = None):
    return keras.layers.Conv2D(
        filters, kernel, strides=stride, dilation_rate=dilation, padding="same", name=name,
        kernel_regularizer=L2(l2) if l2 else None,
    )  # Keras defaults: Glorot-uniform kernel, zero bias


def res(x, cout: int, stride: int, act: str, n: str):
    """Pre-activated bottleneck with a projection shortcut from the raw input."""
    width = cout // 4
    y = _conv(width, 1, f"{n}.conv1")(_act(act, f"{n}.act1")(_bn(f"{n}.bn1")(x)))
    y = _conv(width, 3, f"{n}.conv2", stride)(_act(act, f"{n}.act2")(_bn(f"{n}.bn2")(y)))
    y = keras.layers.Dropout(spec.RES_DROPOUT, name=f"{n}.drop")(y)
    y = _conv(cout, 1, f"{n}.conv3")(_act(act, f"{n}.act3")(_bn(f"{n}.bn3")(y)))
    shortcut = _conv(cout, 1, f"{n}.shortcut", stride)(x)
    return keras.layers.Add(name=f"{n}.add")([y, shortcut])


def mdires(x, dilations, act: str, n: str):
    """Multi-dilated residual block: three parallel dilated 3x3 convs (L2-penalised)."""
    channels = x.shape[-1]
    width = channels // 4
    y = _conv(width, 1, f"{n}.conv1")(_act(act, f"{n}.act1")(_bn(f"{n}.bn1")(x)))
    y = _act(act, f"{n}.act2")(_bn(f"{n}.bn2")(y))
    branches = [
        keras.layers.Dropout(spec.MDIRES_DROPOUT, name=f"{n}.branch{i}.drop")(
            _conv(width, 3, f"{n}.branch{i}.conv", dilation=d, l2=spec.L2_DILATED)(y))
        for i, d in enumerate(dilations)
    ]
    y = keras.layers.Add(name=f"{n}.sum")(branches)
    y = _conv(channels, 1, f"{n}.conv3")(_act(act, f"{n}.act3")(_bn(f"{n}.bn3")(y)))
    return keras.layers.Add(name=f"{n}.add")([y, _conv(channels, 1, f"{n}.shortcut")(x)])


def soft_mask(x, depth: int, block, n: str):
    """Encoder-decoder attention mask (names follow the encoder level they belong to)."""
    m, skips = x, []
    for level in range(1, depth + 1):
        m = keras.layers.MaxPooling2D(2, 2, padding="same", name=f"{n}.pool{level}")(m)
        m = block(m, spec.MASK_DILATIONS, f"{n}.down{level}")
        skips.append(block(m, spec.MASK_DILATIONS, f"{n}.skip{level}"))
    m = block(block(m, spec.MASK_DILATIONS, f"{n}.bottom1"), spec.MASK_DILATIONS, f"{n}.bottom2")
    m = keras.layers.Add(name=f"{n}.add{depth}")([m, skips[-1]])
    for level in range(depth, 0, -1):
        m = block(m, spec.MASK_DILATIONS, f"{n}.dec{level}")
        m = keras.layers.UpSampling2D(2, interpolation="nearest", name=f"{n}.up{level}")(m)
        if level > 1:
            m = keras.layers.Add(name=f"{n}.add{level - 1}")([m, skips[level - 2]])
    channels = x.shape[-1]
    m = _conv(channels, 1, f"{n}.conv2")(_conv(channels, 1, f"{n}.conv1")(m))
    return keras.layers.Activation("sigmoid", name=f"{n}.sigmoid")(m)


def diet(x, plan: DiETPlan, config: MeDiANetConfig):
    n, act = plan.name, config.activation
    as_res = lambda y, _dilations, name: res(y, plan.channels, 1, act, name)
    as_mdires = lambda y, dilations, name: mdires(y, dilations, act, name)
    trunk_block = as_mdires if config.mdires_placement in ("both", "trunk") else as_res
    mask_block = as_mdires if config.mdires_placement in ("both", "mask") else as_res
    x = res(x, plan.channels, 1, act, f"{n}.res_in")
    trunk = trunk_block(trunk_block(x, plan.trunk_dilations, f"{n}.trunk0"), plan.trunk_dilations, f"{n}.trunk1")
    mask = soft_mask(x, plan.encoder_depth, mask_block, f"{n}.mask")
    gated = AttentionGate(name=f"{n}.gate")([mask, trunk])
    return res(gated, plan.channels, 1, act, f"{n}.res_out")


def head(x, config: MeDiANetConfig):
    if config.head == "paper":
        x = keras.layers.AveragePooling2D(spec.PAPER_POOL, strides=1, name="head.avgpool")(x)
    else:
        x = keras.layers.GlobalAveragePooling2D(keepdims=True, name="head.avgpool")(x)
    x = FlattenChannelsFirst(name="head.flatten")(x)
    x = keras.layers.Dropout(spec.HEAD_DROPOUT, name="head.drop")(x)
    x = keras.layers.Dense(2 * config.c_in, kernel_regularizer=L2(spec.L2_FC1), name="head.fc1")(x)
    x = _act(config.activation, "head.act")(x)
    x = keras.layers.Dense(config.num_classes, kernel_regularizer=L2(spec.L2_FC2), name="head.fc2")(x)
    return keras.layers.Softmax(name="head.softmax")(x) if config.softmax else x


@register_family("medianet")
def MeDiANet(config: MeDiANetConfig) -> keras.Model:
    size = spec.PAPER_INPUT if config.head == "paper" else None  # the paper head's Dense fixes the input size
    inputs = keras.Input((size, size, config.in_channels), name="input")
    x = _conv(config.c_in, 7, "stem.conv", 2)(inputs)
    x = _act(config.activation, "stem.act")(_bn("stem.bn")(x))
    x = keras.layers.MaxPooling2D(2, 2, padding="valid", name="stem.pool")(x)
    for plan in spec.stage_plan(config):
        if isinstance(plan, ResPlan):
            x = res(x, plan.out_channels, plan.stride, config.activation, plan.name)
        else:
            x = diet(x, plan, config)
    return keras.Model(inputs, head(x, config), name="medianet")
