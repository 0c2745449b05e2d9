"""EfficientNet-B0..B7 with timm's semantics and state_dict names (``timm.create_model("efficientnet_b4")``).

Not the ``tf_efficientnet_*`` variants: padding is torch's symmetric k//2 (TF's 'same' pads a
stride-2 conv after only) and BatchNorm epsilon is 1e-5 (theirs 1e-3).  Every stage has
squeeze-excitation whose width comes from the block's *input* channels (x 0.25), not from the
expanded width.  The config and the block plan here are what both twins build from.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from canon.errors import ConfigError
from canon.models._registry import register_models

BN_EPSILON = 1e-5
BN_TORCH_MOMENTUM = 0.1  # Keras momentum is 1 - this
CHANNEL_DIVISOR = 8
ROUND_LIMIT = 0.9  # rounding to the divisor never loses more than 10%
STEM_WIDTH = 32  # before the channel multiplier
HEAD_WIDTH = 1280


@dataclass(frozen=True)
class StageSpec:
    """One stage of the B0 table: timm's block string ``{block}_r{repeats}_k{kernel}_s{stride}_e{expansion}
    _c{channels}_se{se_ratio}`` ("ds": depthwise-separable, "ir": inverted residual)."""

    block: str
    repeats: int
    kernel: int
    stride: int  # of the stage's first block; the others have stride 1
    expansion: int
    channels: int  # before the channel multiplier
    se_ratio: float = 0.25  # of the block's input channels


# timm's arch_def of _gen_efficientnet: ds_r1_k3_s1_e1_c16_se0.25, ir_r2_k3_s2_e6_c24_se0.25, ...
B0_STAGES = (
    StageSpec("ds", 1, 3, 1, 1, 16),
    StageSpec("ir", 2, 3, 2, 6, 24),
    StageSpec("ir", 2, 5, 2, 6, 40),
    StageSpec("ir", 3, 3, 2, 6, 80),
    StageSpec("ir", 3, 5, 1, 6, 112),
    StageSpec("ir", 4, 5, 2, 6, 192),
    StageSpec("ir", 1, 3, 1, 6, 320),
)

# name -> (channel multiplier, depth multiplier), as timm's efficientnet_b0..b7
VARIANTS = {
    "efficientnet_b0": (1.0, 1.0), "efficientnet_b1": (1.0, 1.1), "efficientnet_b2": (1.1, 1.2),
    "efficientnet_b3": (1.2, 1.4), "efficientnet_b4": (1.4, 1.8), "efficientnet_b5": (1.6, 2.2),
    "efficientnet_b6": (1.8, 2.6), "efficientnet_b7": (2.0, 3.1),
}


@register_models({name: {"channel_multiplier": c, "depth_multiplier": d} for name, (c, d) in VARIANTS.items()})
@dataclass(frozen=True)
class EfficientNetConfig:
    channel_multiplier: float = 1.0
    depth_multiplier: float = 1.0
    in_channels: int = 3
    num_classes: int = 1000
    drop_path_rate: float = 0.0  # stochastic depth: only 0 (timm's default, MedMNIST+'s setting)
    family: str = "efficientnet"

    def validate(self) -> None:
        for key in ("channel_multiplier", "depth_multiplier"):
            if not float(getattr(self, key)) > 0:
                raise ConfigError(f"efficientnet {key} must be > 0, got {getattr(self, key)}")
        for key in ("in_channels", "num_classes"):
            if int(getattr(self, key)) < 1:
                raise ConfigError(f"efficientnet {key} must be >= 1, got {getattr(self, key)}")
        if self.drop_path_rate != 0:
            raise ConfigError(f"efficientnet drop_path_rate must be 0, got {self.drop_path_rate}: stochastic depth "
                              "is not implemented in the twins (timm's default is 0)")


def make_divisible(value: float, divisor: int = CHANNEL_DIVISOR) -> int:
    """The nearest multiple of ``divisor`` (at least ``divisor``), one step up if that lost over 10%."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < ROUND_LIMIT * value else rounded


def round_channels(channels: int, config: EfficientNetConfig) -> int:
    return make_divisible(channels * config.channel_multiplier)


def stage_depth(repeats: int, config: EfficientNetConfig) -> int:
    return int(math.ceil(repeats * config.depth_multiplier))  # rounded up: every stage grows when > 1


def stem_channels(config: EfficientNetConfig) -> int:
    return round_channels(STEM_WIDTH, config)


def head_channels(config: EfficientNetConfig) -> int:
    """conv_head's width: the pre-logit embedding the classifier takes (1792 for B4)."""
    return round_channels(HEAD_WIDTH, config)


@dataclass(frozen=True)
class BlockPlan:
    name: str  # canonical prefix, e.g. "blocks.1.0"
    block: str  # "ds" or "ir"
    in_channels: int
    mid_channels: int  # the depthwise conv's width (expanded for "ir", the input's for "ds")
    out_channels: int
    kernel: int
    stride: int
    se_channels: int

    @property
    def padding(self) -> int:
        return self.kernel // 2  # torch-style symmetric, as timm's get_padding for odd kernels

    @property
    def has_skip(self) -> bool:
        return self.stride == 1 and self.in_channels == self.out_channels


def block_plan(config: EfficientNetConfig) -> list[list[BlockPlan]]:
    """The blocks stage by stage, named as timm names them (blocks.{stage}.{block})."""
    stages, channels = [], stem_channels(config)
    for s, spec in enumerate(B0_STAGES):
        out, blocks = round_channels(spec.channels, config), []
        for b in range(stage_depth(spec.repeats, config)):
            mid = make_divisible(channels * spec.expansion) if spec.block == "ir" else channels
            # timm: SE of the expanded width with ratio se_ratio / expansion, rounded by round()
            se = round(mid * (spec.se_ratio / spec.expansion))
            blocks.append(BlockPlan(f"blocks.{s}.{b}", spec.block, channels, mid, out, spec.kernel,
                                    spec.stride if b == 0 else 1, se))
            channels = out
        stages.append(blocks)
    return stages
