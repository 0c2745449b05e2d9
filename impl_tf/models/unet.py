"""UNet and ResUNet (seed 003; its module names). Twin: impl_torch/models/unet.py."""

from __future__ import annotations

import keras

from impl_tf import initializers as init
from impl_tf.layers import BatchNorm, DyT2D, PaddedConv2D, PaddedMaxPool2D
from impl_tf.registry import register_family
from canon.models import unet as spec
from canon.models.unet import ResUNetConfig, UNetConfig


def _bn(name: str) -> BatchNorm:
    return BatchNorm(momentum=1.0 - spec.BN_TORCH_MOMENTUM, epsilon=spec.BN_EPSILON, name=name)


def _norm(kind: str, name: str) -> keras.layers.Layer:
    # "none" keeps an Identity in the norm's slot, as the torch twin
    return {"batch": _bn, "dyt": lambda n: DyT2D(name=n)}.get(kind, lambda n: keras.layers.Identity(name=n))(name)


def _conv(filters: int, kernel: int, in_channels: int, name: str, stride: int = 1, padding: int = 0,
          bias: bool = True) -> PaddedConv2D:
    """torch's Conv2d with its default initialisation."""
    return PaddedConv2D(
        filters, kernel, strides=stride, explicit_padding=padding, use_bias=bias, name=name,
        kernel_initializer=init.torch_default_kernel(),
        bias_initializer=init.torch_default_bias(in_channels * kernel * kernel),
    )


def _up(x, filters: int, name: str):
    """torch's ConvTranspose2d(k=2, s=2) with its default initialisation (fan-in = out * 2 * 2)."""
    return keras.layers.Conv2DTranspose(
        filters, 2, strides=2, name=name, kernel_initializer=init.torch_default_kernel(),
        bias_initializer=init.torch_default_bias(filters * 4),
    )(x)


def double_conv(x, filters: int, norm: str, n: str, stride: int = 1):
    x = _conv(filters, 3, x.shape[-1], f"{n}.double_conv.0", stride, 1, bias=False)(x)
    x = keras.layers.ReLU(name=f"{n}.double_conv.2")(_norm(norm, f"{n}.double_conv.1")(x))
    x = _conv(filters, 3, filters, f"{n}.double_conv.3", 1, 1, bias=False)(x)
    return keras.layers.ReLU(name=f"{n}.double_conv.5")(_norm(norm, f"{n}.double_conv.4")(x))


def _concat(tensors, name: str):
    return keras.layers.Concatenate(axis=-1, name=name)(tensors)


@register_family("unet")
def UNet(config: UNetConfig) -> keras.Model:
    inputs = keras.Input((None, None, config.in_channels), name="input")
    widths, levels = config.widths, len(config.widths) - 1
    skips = [double_conv(inputs, widths[0], config.norm, "encoder.0")]
    for level in range(levels):
        pooled = keras.layers.MaxPooling2D(2, name=f"pools.{level}")(skips[-1])
        skips.append(double_conv(pooled, widths[level + 1], config.norm, f"encoder.{level + 1}"))
    x = skips.pop()
    for level in range(levels):
        skip = skips.pop()
        up = _up(x, skip.shape[-1], f"decoder.{2 * level}")
        x = double_conv(_concat([skip, up], f"concats.{level}"), skip.shape[-1], config.norm,
                        f"decoder.{2 * level + 1}")
    x = _conv(config.out_channels, 1, widths[0], f"decoder.{2 * levels}.0")(x)
    outputs = keras.layers.Activation("sigmoid", name=f"decoder.{2 * levels}.1")(x)
    return keras.Model(inputs, outputs, name="unet")


def resnet_block(x, filters: int, norm: str, n: str, stride: int = 1, downsample: bool = False):
    y = double_conv(x, filters, norm, f"{n}.block", stride)
    if downsample:
        shortcut = _bn(f"{n}.shortcut.1")(_conv(filters, 1, x.shape[-1], f"{n}.shortcut.0", stride=2)(x))
    else:
        shortcut = keras.layers.Identity(name=f"{n}.shortcut")(x)
    return keras.layers.Add(name=f"{n}.add")([y, shortcut])


@register_family("resunet")
def ResUNet(config: ResUNetConfig) -> keras.Model:
    w, d = spec.RESUNET_WIDTHS, spec.RESUNET_DECODER
    inputs = keras.Input((None, None, config.in_channels), name="input")
    x = _conv(w[0], 7, config.in_channels, "tail.0", stride=2, padding=3, bias=False)(inputs)
    x = keras.layers.ReLU(name="tail.2")(_bn("tail.1")(x))
    skips = [PaddedMaxPool2D(3, strides=2, explicit_padding=1, name="tail.3")(x)]
    for index, (count, width) in enumerate(zip(config.blocks, w)):
        x = resnet_block(skips[-1], width, config.norm, f"encoder.{index}.0",
                         *((1, False) if index == 0 else (2, True)))
        for j in range(1, count):
            x = resnet_block(x, width, config.norm, f"encoder.{index}.{j}")
        skips.append(x)
    x = _conv(spec.RESUNET_CENTER, 3, w[3], "center.0", padding=1)(skips[-1])
    x = keras.layers.ReLU(name="center.2")(_bn("center.1")(x))
    for level in range(4):
        x = _up(_concat([x, skips.pop()], f"concats.{level}"), d, f"decoder.{level}.0")
        x = double_conv(x, d, config.norm, f"decoder.{level}.1")
    x = _up(x, d, "head.0")
    x = _conv(config.out_channels, 1, d, "head.1")(x)
    outputs = keras.layers.Activation("sigmoid", name="head.2")(x)
    return keras.Model(inputs, outputs, name="resunet")
