"""UNet and ResUNet for binary segmentation (seed 003; PyTorch semantics, sigmoid outputs).

The normalisation inside every DoubleConv is an option: ``batch`` (the seed's default),
``none`` (its section 5.1) or ``dyt`` (DyT2d, its section 5.2).  The ResUNet's tail,
shortcut and center keep their BatchNorm in every variant, as in the seed.
"""

from __future__ import annotations

from dataclasses import dataclass

from canon.errors import ConfigError
from canon.models._registry import register_models

NORMS = ("batch", "none", "dyt")
BN_EPSILON = 1e-5
BN_TORCH_MOMENTUM = 0.1
UNET_WIDTHS = (64, 128, 256, 512, 1024)
RESUNET_WIDTHS = (64, 128, 256, 512)
RESUNET_CENTER = 256
RESUNET_DECODER = 32


@register_models({"unet": {}})
@dataclass(frozen=True)
class UNetConfig:
    in_channels: int = 3
    out_channels: int = 1
    norm: str = "batch"
    widths: tuple[int, ...] = UNET_WIDTHS
    family: str = "unet"

    def validate(self) -> None:
        _check_common(self, "unet")
        if len(self.widths) < 2 or min(self.widths) < 1:
            raise ConfigError(f"unet widths must be two or more positive channel counts, got {self.widths}")

    @property
    def downsampling(self) -> int:
        return 2 ** (len(self.widths) - 1)


@register_models({"resunet": {}})
@dataclass(frozen=True)
class ResUNetConfig:
    in_channels: int = 3
    out_channels: int = 1
    norm: str = "batch"
    blocks: tuple[int, int, int, int] = (3, 4, 6, 2)
    family: str = "resunet"

    def validate(self) -> None:
        _check_common(self, "resunet")
        if len(self.blocks) != 4 or min(self.blocks) < 1:
            raise ConfigError(f"resunet blocks must be four positive counts, got {self.blocks}")

    @property
    def downsampling(self) -> int:
        return 32  # tail /4, three stride-2 encoder layers


def _check_common(config, model: str) -> None:
    if config.norm not in NORMS:
        raise ConfigError(f"{model} norm must be one of {NORMS}, got {config.norm!r}")
    if config.in_channels < 1 or config.out_channels < 1:
        raise ConfigError(f"{model} in_channels and out_channels must be >= 1")


def check_input_size(height: int, width: int, config: UNetConfig | ResUNetConfig) -> None:
    """Skip connections concatenate encoder and decoder maps: every level must halve exactly."""
    step = config.downsampling
    for size, axis in ((height, "height"), (width, "width")):
        if size % step:
            raise ConfigError(f"{config.family} input {axis} {size} is not a multiple of {step}; "
                              f"its skip connections need exact halving (e.g. 64, 96 or 256)")
