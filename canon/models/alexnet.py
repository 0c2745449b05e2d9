"""AlexNet (seed 002; PyTorch semantics).  Layer names follow torchvision's AlexNet
(``features.N``, ``classifier.N``) so its checkpoints load; the seed's ``conv_layers`` /
``fc_layers`` are the same modules under other names.  Unlike torchvision there is no
adaptive pool: the features are flattened as they are, so the input must give a 6x6 map."""

from __future__ import annotations

from dataclasses import dataclass

from canon.errors import ConfigError
from canon.models._registry import register_models

# (kind, out_channels, kernel, stride, padding) in torchvision's features.N order
FEATURES = (
    ("conv", 64, 11, 4, 2), ("relu",), ("maxpool", 3, 2),
    ("conv", 192, 5, 1, 2), ("relu",), ("maxpool", 3, 2),
    ("conv", 384, 3, 1, 1), ("relu",),
    ("conv", 256, 3, 1, 1), ("relu",),
    ("conv", 256, 3, 1, 1), ("relu",), ("maxpool", 3, 2),
)
FEATURE_CHANNELS = 256
FEATURE_MAP = 6  # at a 224x224 input
HIDDEN = 4096
DROPOUT = 0.5
PAPER_INPUT = 224


@register_models({"alexnet": {}})
@dataclass(frozen=True)
class AlexNetConfig:
    in_channels: int = 3
    num_classes: int = 1000
    input_size: tuple[int, int] = (PAPER_INPUT, PAPER_INPUT)  # fixes the first Linear's fan-in
    family: str = "alexnet"

    def validate(self) -> None:
        if self.in_channels < 1 or self.num_classes < 1:
            raise ConfigError("alexnet in_channels and num_classes must be >= 1")
        if len(self.input_size) != 2:
            raise ConfigError(f"alexnet input_size must be (height, width), got {self.input_size}")
        check_input_size(*self.input_size)


def feature_map_size(size: int) -> int:
    """Spatial size after ``features`` (torch floor arithmetic); it must be 6, as the seed's Linear(256*6*6) fixes."""
    for layer in FEATURES:
        if layer[0] == "conv":
            _, _, kernel, stride, padding = layer
            size = (size + 2 * padding - kernel) // stride + 1
        elif layer[0] == "maxpool":
            size = (size - layer[1]) // layer[2] + 1
    return size


def check_input_size(height: int, width: int) -> None:
    for size, axis in ((height, "height"), (width, "width")):
        if feature_map_size(size) != FEATURE_MAP:
            raise ConfigError(f"alexnet input {axis} {size} gives a {feature_map_size(size)}-pixel feature map; "
                              f"the classifier (Linear {FEATURE_CHANNELS}*{FEATURE_MAP}*{FEATURE_MAP}) needs "
                              f"{FEATURE_MAP} (e.g. {PAPER_INPUT}x{PAPER_INPUT} input)")
