"""AECNN (seed 001): a 4x autoencoder whose latent image feeds a DenseNet-121 classifier.

Stage 2 trains the autoencoder alone (``aecnn_autoencoder``); stage 3 (``aecnn``) trains
both end to end and returns ``(reconstruction, logits)``; the classifier sees the clipped
latent, repeated to three channels and ImageNet-normalised, never the reconstruction.
"""

from __future__ import annotations

from dataclasses import dataclass

from canon.errors import ConfigError
from canon.models._registry import register_models
from canon.models.densenet import DenseNetConfig

SCALE = 4  # encoder stride = decoder PixelShuffle factor
ENCODER_WIDTH = 32
ENCODER_KERNEL = 5
DECODER_KERNEL = 3
ELU_ALPHA = 1.0
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
STAGES = ("autoencoder", "joint")
PAPER_INPUT = 896


@register_models({"aecnn_autoencoder": {"stage": "autoencoder"}, "aecnn": {"stage": "joint"}})
@dataclass(frozen=True)
class AECNNConfig:
    stage: str = "joint"
    in_channels: int = 1
    num_classes: int = 14
    classifier_blocks: tuple[int, ...] = (6, 12, 24, 16)  # DenseNet-121
    family: str = "aecnn"

    def validate(self) -> None:
        if self.stage not in STAGES:
            raise ConfigError(f"aecnn stage must be one of {STAGES}, got {self.stage!r}")
        if self.in_channels < 1 or self.num_classes < 1:
            raise ConfigError("aecnn in_channels and num_classes must be >= 1")
        self.classifier().validate()

    def classifier(self) -> DenseNetConfig:
        return DenseNetConfig(block_config=self.classifier_blocks, in_channels=len(IMAGENET_MEAN),
                              num_classes=self.num_classes)


def check_input_size(height: int, width: int) -> None:
    """The reconstruction has the input's size only when both sides are multiples of 4."""
    for size, axis in ((height, "height"), (width, "width")):
        if size % SCALE:
            raise ConfigError(f"aecnn input {axis} {size} is not a multiple of {SCALE} (encoder stride / PixelShuffle "
                              f"factor), so the reconstruction could not match it; the paper uses {PAPER_INPUT}")
