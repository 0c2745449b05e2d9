"""AECNN (seed 001): stage-2 autoencoder and stage-3 joint model. Twin: impl_torch/models/aecnn.py."""

from __future__ import annotations

import keras

from impl_tf import initializers as init
from impl_tf.layers import ClippedReLU, Normalize, PaddedConv2D, PixelShuffle, RepeatChannels
from impl_tf.models.densenet import densenet_logits
from impl_tf.registry import register_family
from canon.models import aecnn as spec
from canon.models.aecnn import AECNNConfig


def _conv(filters: int, kernel: int, in_channels: int, name: str, stride: int = 1) -> PaddedConv2D:
    """torch's Conv2d with its default initialisation."""
    return PaddedConv2D(filters, kernel, strides=stride, explicit_padding=kernel // 2, name=name,
                        kernel_initializer=init.torch_default_kernel(),
                        bias_initializer=init.torch_default_bias(in_channels * kernel * kernel))


@register_family("aecnn")
def AECNN(config: AECNNConfig) -> keras.Model:
    c, r = config.in_channels, spec.SCALE
    inputs = keras.Input((None, None, c), name="input")
    latent = _conv(spec.ENCODER_WIDTH, spec.ENCODER_KERNEL, c, "encoder.0", stride=r)(inputs)
    latent = keras.layers.ELU(spec.ELU_ALPHA, name="encoder.1")(latent)
    latent = _conv(1, 1, spec.ENCODER_WIDTH, "encoder.2")(latent)
    if config.stage == "joint":
        latent = ClippedReLU(name="latent_clip")(latent)
    reconstruction = _conv(c * r * r, spec.DECODER_KERNEL, 1, "decoder.0")(latent)
    reconstruction = PixelShuffle(r, name="decoder.1")(reconstruction)
    reconstruction = ClippedReLU(name="recon_clip")(reconstruction)
    if config.stage == "autoencoder":
        return keras.Model(inputs, reconstruction, name="aecnn_autoencoder")
    image = Normalize(spec.IMAGENET_MEAN, spec.IMAGENET_STD, name="normalize")(
        RepeatChannels(len(spec.IMAGENET_MEAN), name="to_rgb")(latent))
    logits = densenet_logits(image, config.classifier(), prefix="classifier.")
    return keras.Model(inputs, [reconstruction, logits], name="aecnn")
