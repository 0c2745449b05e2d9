"""DenseNet-121 with torchvision's semantics and names (seed 001's classifier).

BatchNorm epsilon 1e-5 and torch momentum 0.1 (Keras' own DenseNet121 uses 1.001e-5,
which is not the reference here)."""

from __future__ import annotations

from dataclasses import dataclass

from canon.errors import ConfigError
from canon.models._registry import register_models

BN_EPSILON = 1e-5
BN_TORCH_MOMENTUM = 0.1


@register_models({"densenet121": {"block_config": (6, 12, 24, 16)}})
@dataclass(frozen=True)
class DenseNetConfig:
    block_config: tuple[int, ...] = (6, 12, 24, 16)
    growth_rate: int = 32
    bn_size: int = 4  # bottleneck width = bn_size * growth_rate
    num_init_features: int = 64
    in_channels: int = 3
    num_classes: int = 1000
    family: str = "densenet"

    def validate(self) -> None:
        if not self.block_config or min(self.block_config) < 1:
            raise ConfigError(f"densenet block_config must be positive layer counts, got {self.block_config}")
        for key in ("growth_rate", "bn_size", "num_init_features", "in_channels", "num_classes"):
            if int(getattr(self, key)) < 1:
                raise ConfigError(f"densenet {key} must be >= 1, got {getattr(self, key)}")


@dataclass(frozen=True)
class DenseBlockPlan:
    index: int  # 1-based, as torchvision's denseblock{i}
    num_layers: int
    in_channels: int
    transition_out: int | None  # None after the last block


def block_plan(config: DenseNetConfig) -> list[DenseBlockPlan]:
    plan, channels = [], config.num_init_features
    for index, layers in enumerate(config.block_config, start=1):
        grown = channels + layers * config.growth_rate
        last = index == len(config.block_config)
        plan.append(DenseBlockPlan(index, layers, channels, None if last else grown // 2))
        channels = grown if last else grown // 2
    return plan


def num_features(config: DenseNetConfig) -> int:
    """Channels entering the classifier (1024 for DenseNet-121)."""
    last = block_plan(config)[-1]
    return last.in_channels + last.num_layers * config.growth_rate
