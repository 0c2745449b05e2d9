"""ResNet-18/34 (torchvision semantics): the config and the block plan both twins build from."""

from __future__ import annotations

from dataclasses import dataclass

from canon.errors import ConfigError
from canon.models._registry import register_models

STAGE_WIDTHS = (64, 128, 256, 512)
BN_EPSILON = 1e-5
BN_TORCH_MOMENTUM = 0.1  # Keras momentum is 1 - this
FC_INIT_STD = 0.01


@register_models({"resnet18": {"blocks": (2, 2, 2, 2)}, "resnet34": {"blocks": (3, 4, 6, 3)}})
@dataclass(frozen=True)
class ResNetConfig:
    blocks: tuple[int, int, int, int] = (2, 2, 2, 2)
    in_channels: int = 3
    num_classes: int = 1000
    family: str = "resnet"

    def validate(self) -> None:
        if len(self.blocks) != 4 or any(int(b) < 1 for b in self.blocks):
            raise ConfigError(f"resnet blocks must be four positive counts, got {self.blocks}")
        for key in ("in_channels", "num_classes"):
            if int(getattr(self, key)) < 1:
                raise ConfigError(f"resnet {key} must be >= 1, got {getattr(self, key)}")


@dataclass(frozen=True)
class BasicBlockPlan:
    name: str  # canonical prefix, e.g. "layer2.0"
    in_channels: int
    out_channels: int
    stride: int

    @property
    def has_downsample(self) -> bool:
        return self.stride != 1 or self.in_channels != self.out_channels


def block_plan(config: ResNetConfig) -> list[BasicBlockPlan]:
    """The BasicBlocks in order, named as torchvision names them (layer{1..4}.{i})."""
    plan = []
    in_channels = STAGE_WIDTHS[0]
    for stage, (count, width) in enumerate(zip(config.blocks, STAGE_WIDTHS), start=1):
        for index in range(count):
            stride = 2 if (stage > 1 and index == 0) else 1
            plan.append(BasicBlockPlan(f"layer{stage}.{index}", in_channels, width, stride))
            in_channels = width
    return plan
