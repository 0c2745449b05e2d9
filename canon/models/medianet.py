"""MeDiANet (docs/medianet.md): TensorFlow semantics, the config and the plan both twins build from.

The authors' published results come from their TensorFlow code; both twins follow it
(TF 'same' padding, 2x2 'same' max-pools, nearest upsampling, BN epsilon 1e-3 /
Keras momentum 0.99 with an unbiased moving variance, Glorot-uniform kernels, zero
biases, L2 kernel penalties).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from canon.errors import ConfigError
from canon.models._registry import register_models

# name -> (c_in, DiET blocks per stage B, Res blocks per stage R); paper section 2.3
VARIANTS = {
    "base69": (16, (1, 1, 1, 0), (1, 1, 1, 2)),
    "base117": (16, (1, 2, 3, 0), (1, 1, 1, 3)),
    "wide69": (32, (1, 1, 1, 0), (1, 1, 1, 3)),
    "wide117": (32, (2, 2, 2, 0), (1, 1, 1, 3)),
}

STAGE_DILATIONS = ((4, 8, 12), (2, 4, 6), (1, 2, 3))  # trunk MDiRes of DiETs in stages 1-3
ENCODER_DEPTHS = (3, 2, 1)
MASK_DILATIONS = (1, 2, 3)  # every soft-mask MDiRes
LAST_RES_CHANNELS = 256

BN_EPSILON = 1e-3
BN_KERAS_MOMENTUM = 0.99  # torch momentum 1 - 0.99 = 0.01
BN_TORCH_MOMENTUM = 1.0 - BN_KERAS_MOMENTUM
RES_DROPOUT = 0.3
MDIRES_DROPOUT = 0.2
HEAD_DROPOUT = 0.25
PAPER_POOL = 7  # AvgPool 7x7 stride 1 on the 7x7 map of a 224x224 input, then Flatten -> Dense
PAPER_INPUT = 224

# L2 kernel penalties, coefficient * sum(w^2) (Keras' l2(None) means 0.01)
L2_DILATED = 0.01
L2_FC1 = 0.02
L2_FC2 = 0.002

HEADS = ("paper", "global")
ACTIVATIONS = ("mish", "relu")
PLACEMENTS = ("both", "trunk", "mask")  # where DiET uses MDiRes; elsewhere a Res block (Table 2)


@register_models({
    # "medianet" alone takes any (c_in, blocks, res_blocks); the paper's variants are named
    "medianet": {},
    **{f"medianet_{variant}": {"c_in": c_in, "blocks": b, "res_blocks": r}
       for variant, (c_in, b, r) in VARIANTS.items()},
})
@dataclass(frozen=True)
class MeDiANetConfig:
    c_in: int = 16
    blocks: tuple[int, int, int, int] = (1, 1, 1, 0)
    res_blocks: tuple[int, int, int, int] = (1, 1, 1, 2)
    in_channels: int = 3
    num_classes: int = 35
    head: str = "paper"
    activation: str = "mish"
    mdires_placement: str = "both"
    softmax: bool = False  # the paper's model ends in softmax; training and parity use the logits
    family: str = "medianet"

    def validate(self) -> None:
        if self.c_in < 4 or self.c_in % 4:
            raise ConfigError(f"medianet c_in must be a positive multiple of 4, got {self.c_in}")
        if len(self.blocks) != 4 or len(self.res_blocks) != 4:
            raise ConfigError(f"medianet blocks and res_blocks need four entries, got {self.blocks}, {self.res_blocks}")
        if self.blocks[3] != 0 or min(self.blocks) < 0:
            raise ConfigError(f"medianet has DiET blocks in stages 1-3 only (B4 = 0), got blocks={self.blocks}")
        if min(self.res_blocks) < 1:
            raise ConfigError(f"medianet needs at least one Res block per stage, got res_blocks={self.res_blocks}")
        for key, allowed in (("head", HEADS), ("activation", ACTIVATIONS), ("mdires_placement", PLACEMENTS)):
            if getattr(self, key) not in allowed:
                raise ConfigError(f"medianet {key} must be one of {allowed}, got {getattr(self, key)!r}")
        if self.in_channels < 1 or self.num_classes < 1:
            raise ConfigError("medianet in_channels and num_classes must be >= 1")


@dataclass(frozen=True)
class ResPlan:
    name: str
    out_channels: int
    stride: int


@dataclass(frozen=True)
class DiETPlan:
    name: str
    channels: int
    encoder_depth: int
    trunk_dilations: tuple[int, int, int]


def stage_plan(config: MeDiANetConfig) -> list[ResPlan | DiETPlan]:
    """Every block after the stem, in order, with canonical names stage{s}.res{i} / stage{s}.diet{j}."""
    plan: list[ResPlan | DiETPlan] = []
    for stage in range(1, 5):
        channels = config.c_in * 2 ** (stage - 1)
        count = config.res_blocks[stage - 1]
        for i in range(count):
            out = LAST_RES_CHANNELS if (stage == 4 and i == count - 1) else channels
            stride = 2 if (stage > 1 and i == 0) else 1
            plan.append(ResPlan(f"stage{stage}.res{i}", out, stride))
        for j in range(config.blocks[stage - 1]):
            plan.append(DiETPlan(f"stage{stage}.diet{j}", channels, ENCODER_DEPTHS[stage - 1],
                                 STAGE_DILATIONS[stage - 1]))
    return plan


def mdires_count(config: MeDiANetConfig) -> int:
    """MDiRes blocks in the network (3e + 4 per DiET with both placements)."""
    return sum(3 * ENCODER_DEPTHS[s] + 4 for s in range(3) for _ in range(config.blocks[s]))


def tf_same_padding(size: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """TF's 'same' padding along one axis: (before, after); the odd pixel goes after."""
    effective = (kernel - 1) * dilation + 1
    total = max((math.ceil(size / stride) - 1) * stride + effective - size, 0)
    return total // 2, total - total // 2


def check_input_size(height: int, width: int, config: MeDiANetConfig) -> None:
    """The soft-mask encoder halves each stage's map e times and upsamples back: sizes must divide."""
    for size, axis in ((height, "height"), (width, "width")):
        stem = math.ceil(size / 2) // 2
        stage_sizes = [stem, math.ceil(stem / 2), math.ceil(stem / 4), math.ceil(stem / 8)]
        for stage, depth in enumerate(ENCODER_DEPTHS):
            if config.blocks[stage] and stage_sizes[stage] % 2 ** depth:
                raise ConfigError(
                    f"medianet input {axis} {size}: stage {stage + 1} map of {stage_sizes[stage]} is not divisible by "
                    f"2^{depth} (its soft-mask depth); use a multiple of 32 such as 64, 96 or 224")
        if config.head == "paper" and stage_sizes[3] != PAPER_POOL:
            raise ConfigError(f"medianet input {axis} {size} gives a {stage_sizes[3]}-pixel final map; the paper head "
                              f"(AvgPool {PAPER_POOL}, Flatten, Dense) needs {PAPER_INPUT}x{PAPER_INPUT} input; "
                              "use head='global' for other sizes")
