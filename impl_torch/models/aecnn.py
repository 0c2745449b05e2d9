"""AECNN (seed 001): stage-2 autoencoder and stage-3 joint model. Twin: impl_tf/models/aecnn.py."""

from __future__ import annotations

from torch import nn

from impl_torch.layers import ClippedReLU, Normalize, RepeatChannels
from impl_torch.models.densenet import DenseNet
from impl_torch.registry import register_family
from canon.models import aecnn as spec
from canon.models.aecnn import AECNNConfig


@register_family("aecnn")
class AECNN(nn.Module):
    """``autoencoder``: x -> reconstruction.  ``joint``: x -> (reconstruction, logits), the
    classifier fed the clipped latent as an ImageNet-normalised 3-channel image."""

    def __init__(self, config: AECNNConfig):
        super().__init__()
        self.stage = config.stage
        c, r = config.in_channels, spec.SCALE
        self.encoder = nn.Sequential(
            nn.Conv2d(c, spec.ENCODER_WIDTH, spec.ENCODER_KERNEL, r, spec.ENCODER_KERNEL // 2),
            nn.ELU(spec.ELU_ALPHA),
            nn.Conv2d(spec.ENCODER_WIDTH, 1, 1),
        )
        self.decoder = nn.Sequential(
            nn.Conv2d(1, c * r * r, spec.DECODER_KERNEL, padding=spec.DECODER_KERNEL // 2),
            nn.PixelShuffle(r),
        )
        self.recon_clip = ClippedReLU()
        if config.stage == "joint":
            self.latent_clip = ClippedReLU()
            self.to_rgb = RepeatChannels(len(spec.IMAGENET_MEAN))
            self.normalize = Normalize(spec.IMAGENET_MEAN, spec.IMAGENET_STD)
            self.classifier = DenseNet(config.classifier())

    def forward(self, x):
        spec.check_input_size(x.shape[-2], x.shape[-1])
        if self.stage == "autoencoder":
            return self.recon_clip(self.decoder(self.encoder(x)))
        latent = self.latent_clip(self.encoder(x))
        reconstruction = self.recon_clip(self.decoder(latent))
        return reconstruction, self.classifier(self.normalize(self.to_rgb(latent)))
