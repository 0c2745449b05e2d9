"""VGG 11/13/16/19 (seed 002; PyTorch semantics, torchvision layer names ``features.N``,
``avgpool``, ``classifier.N``).  The adaptive average pool's bins are torch's, at any input size."""

from __future__ import annotations

import math
from dataclasses import dataclass

from canon.errors import ConfigError
from canon.models._registry import register_models

# numbers: 3x3 conv (padding 1) + ReLU; "M": MaxPool 2/2
PLANS: dict[int, tuple] = {
    11: (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    13: (64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    16: (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"),
    19: (64, 64, "M", 128, 128, "M", *(256,) * 4, "M", *(512,) * 4, "M", *(512,) * 4, "M"),
}
POOL_SIZE = (7, 7)
FEATURE_CHANNELS = 512
HIDDEN = 4096
DROPOUT = 0.5
LINEAR_INIT_STD = 0.01


@register_models({f"vgg{depth}": {"depth": depth} for depth in PLANS})
@dataclass(frozen=True)
class VGGConfig:
    depth: int = 16
    in_channels: int = 3
    num_classes: int = 1000
    family: str = "vgg"

    def validate(self) -> None:
        if self.depth not in PLANS:
            raise ConfigError(f"vgg depth must be one of {sorted(PLANS)}, got {self.depth}")
        if self.in_channels < 1 or self.num_classes < 1:
            raise ConfigError("vgg in_channels and num_classes must be >= 1")


def feature_layers(config: VGGConfig) -> list[tuple[str, int]]:
    """``features`` in torchvision's index order: ("conv", out_channels) / ("relu", 0) / ("maxpool", 0)."""
    layers: list[tuple[str, int]] = []
    for item in PLANS[config.depth]:
        layers.extend([("maxpool", 0)] if item == "M" else [("conv", item), ("relu", 0)])
    return layers


def adaptive_pool_bins(in_size: int, out_size: int) -> list[tuple[int, int]]:
    """torch's adaptive pooling windows along one axis: [floor(i*In/Out), ceil((i+1)*In/Out)).

    Windows overlap when In is not a multiple of Out, and repeat when In < Out."""
    if in_size < 1 or out_size < 1:
        raise ValueError(f"adaptive pooling needs positive sizes, got {in_size} -> {out_size}")
    return [(i * in_size // out_size, math.ceil((i + 1) * in_size / out_size)) for i in range(out_size)]
