"""The SAM ViT image encoder with timm's semantics and state_dict names
(``timm.create_model("samvit_base_patch16")``, ``timm/models/vision_transformer_sam.py``).

Tokens stay an (N, H, W, C) grid in both twins.  Blocks attend within zero-padded windows
except the global ones; every attention adds a decomposed relative-position bias.  At an input
other than the one the tables were made for (MedMNIST+ feeds 224 to a 1024 model), timm resamples
on every forward: the absolute position embedding bicubic with antialias, the global blocks'
relative tables linearly.  Both resamplings are linear maps of a weight with sizes the config
fixes, so the matrices of torch's ``F.interpolate`` are computed here once, in float64, and both
twins apply them as constant matrix products (gradients reach the original tables).

The input normalisation is ImageNet's (timm's default config for this model):
``canon.models.mean_std("samvit_base_patch16")``, or ``MEAN_STD`` here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from canon.errors import ConfigError
from canon.models._registry import IMAGENET, register_models

MEAN_STD = IMAGENET
BICUBIC_AA_A = -0.5  # torch's antialiased bicubic: Keys' a = -0.5, as PIL (its plain bicubic uses -0.75)
CUBIC_SUPPORT = 4  # taps of the cubic kernel at scale 1


def _pair(size) -> tuple[int, int]:
    return (int(size), int(size)) if isinstance(size, (int, np.integer)) else tuple(int(s) for s in size)


@register_models({"samvit_base_patch16": {}}, mean_std=MEAN_STD)
@dataclass(frozen=True)
class SamViTConfig:
    img_size: int | tuple[int, int] = 1024  # the size pos_embed and the global tables were made for
    input_size: int | tuple[int, int] | None = None  # the size the model is fed (None: img_size)
    patch_size: int = 16
    in_channels: int = 3
    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_ratio: float = 4.0
    window_size: int = 14  # 0: every block global
    global_attn_indexes: tuple[int, ...] = (2, 5, 8, 11)
    use_rel_pos: bool = True
    norm_eps: float = 1e-5  # the blocks' LayerNorm (torch's default; original SAM 1e-6)
    neck_eps: float = 1e-6  # the neck's LayerNorm2d
    neck_channels: int = 256
    num_classes: int = 0  # timm's default for this model: no head.fc, the output is the pooled neck
    family: str = "samvit"

    def validate(self) -> None:
        for key in ("patch_size", "in_channels", "embed_dim", "depth", "num_heads", "neck_channels"):
            if int(getattr(self, key)) < 1:
                raise ConfigError(f"samvit {key} must be >= 1, got {getattr(self, key)}")
        if self.num_classes < 0 or self.window_size < 0:
            raise ConfigError(f"samvit num_classes and window_size must be >= 0, got {self.num_classes}, "
                              f"{self.window_size}")
        if self.embed_dim % self.num_heads:
            raise ConfigError(f"samvit embed_dim {self.embed_dim} is not divisible by num_heads {self.num_heads}")
        if self.mlp_ratio <= 0 or self.mlp_hidden < 1:
            raise ConfigError(f"samvit mlp_ratio must give a positive MLP width, got {self.mlp_ratio}")
        for key in ("img_size", "input_size"):
            size = self.pretrain_size if key == "img_size" else self.image_size
            if len(size) != 2 or min(size) < 1:
                raise ConfigError(f"samvit {key} must be a size or (height, width), got {getattr(self, key)}")
            if size[0] % self.patch_size or size[1] % self.patch_size:
                raise ConfigError(f"samvit {key} {size} must be divisible by patch_size {self.patch_size} "
                                  "(timm's patch embedding refuses other inputs)")
        indexes = tuple(self.global_attn_indexes)
        if len(set(indexes)) != len(indexes) or any(not 0 <= i < self.depth for i in indexes):
            raise ConfigError(f"samvit global_attn_indexes {indexes} must be distinct block indexes below depth "
                              f"{self.depth}")

    @property
    def pretrain_size(self) -> tuple[int, int]:
        return _pair(self.img_size)

    @property
    def image_size(self) -> tuple[int, int]:
        """(height, width) of the input the model is fed; H != W works (windows pad each axis)."""
        return _pair(self.img_size if self.input_size is None else self.input_size)

    @property
    def pretrain_grid(self) -> tuple[int, int]:
        """The token grid pos_embed and the global relative tables were made for (64x64 for 1024)."""
        return self.pretrain_size[0] // self.patch_size, self.pretrain_size[1] // self.patch_size

    @property
    def grid(self) -> tuple[int, int]:
        """The token grid of the input the model is fed (14x14 for 224)."""
        return self.image_size[0] // self.patch_size, self.image_size[1] // self.patch_size

    @property
    def head_dim(self) -> int:
        return self.embed_dim // self.num_heads

    @property
    def mlp_hidden(self) -> int:
        return int(self.embed_dim * self.mlp_ratio)  # timm's int(dim * mlp_ratio)


# -- the blocks --------------------------------------------------------------------------

@dataclass(frozen=True)
class BlockPlan:
    index: int
    window: int  # 0: global attention over the whole grid
    attention_size: tuple[int, int]  # (h, w) one attention call sees: the window, or the input grid
    table_rows: tuple[int, int]  # rows of rel_pos_h, rel_pos_w in the state dict


def block_plan(config: SamViTConfig) -> list[BlockPlan]:
    plan = []
    for i in range(config.depth):
        window = 0 if i in config.global_attn_indexes else config.window_size
        made_for = (window, window) if window else config.pretrain_grid
        seen = (window, window) if window else config.grid
        plan.append(BlockPlan(i, window, seen, (2 * made_for[0] - 1, 2 * made_for[1] - 1)))
    return plan


def window_padding(size: int, window: int) -> int:
    """Zeros added after (bottom/right) so the grid is a whole number of windows."""
    return (window - size % window) % window


def padded_grid(grid: tuple[int, int], window: int) -> tuple[int, int]:
    """The (H, W) grid padded to whole windows, as the window partition sees it."""
    return tuple(g + window_padding(g, window) for g in grid)


def parameter_count(config: SamViTConfig) -> int:
    """Parameters of the encoder (head.fc included when num_classes > 0); 89,670,912 for ViT-B."""
    c, gh, gw, p = config.embed_dim, *config.pretrain_grid, config.patch_size
    count = gh * gw * c + c * config.in_channels * p * p + c
    for block in block_plan(config):
        rel = (sum(block.table_rows) * config.head_dim) if config.use_rel_pos else 0
        count += 4 * c + rel + 3 * c * c + 3 * c + c * c + c + 2 * c * config.mlp_hidden + config.mlp_hidden + c
    n = config.neck_channels
    count += c * n + 2 * n + n * n * 9 + 2 * n
    return count + (n * config.num_classes + config.num_classes if config.num_classes else 0)


# -- torch's interpolation weights as matrices (float64) ----------------------------------

def _keys_cubic(x: np.ndarray, a: float) -> np.ndarray:
    x = np.abs(x)
    near = ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
    far = (((x - 5.0) * x + 8.0) * x - 4.0) * a
    return np.where(x < 1.0, near, np.where(x < 2.0, far, 0.0))


def bicubic_antialias_matrix(in_size: int, out_size: int, a: float = BICUBIC_AA_A) -> np.ndarray:
    """(out, in): ``F.interpolate(mode="bicubic", antialias=True, align_corners=False)`` along one
    axis.  torch's separable antialias path: scale = in/out; when shrinking the kernel is
    stretched by the scale (support 2*scale taps each side); each output pixel's centre is
    scale*(i + 0.5); its taps are the input pixels whose centres fall within the support, their
    weights the cubic of the distance / max(scale, 1), normalised to sum to one."""
    scale = in_size / out_size
    support = CUBIC_SUPPORT * 0.5 * scale if scale >= 1.0 else CUBIC_SUPPORT * 0.5
    inverse = 1.0 / scale if scale >= 1.0 else 1.0
    matrix = np.zeros((out_size, in_size), dtype=np.float64)
    for i in range(out_size):
        center = scale * (i + 0.5)
        start = max(int(center - support + 0.5), 0)  # C++ truncation toward zero, then clamped
        stop = min(int(center + support + 0.5), in_size)
        taps = np.arange(start, stop)
        weights = _keys_cubic((taps - center + 0.5) * inverse, a)
        total = weights.sum()
        matrix[i, start:stop] = weights / total if total != 0.0 else weights
    return matrix


def linear_matrix(in_size: int, out_size: int) -> np.ndarray:
    """(out, in): ``F.interpolate(mode="linear", align_corners=False)`` (no antialias in torch's
    linear mode): source x = (i + 0.5) * in/out - 0.5, clamped at 0, between floor(x) and the next
    pixel (the last pixel's neighbour is itself)."""
    scale = in_size / out_size
    matrix = np.zeros((out_size, in_size), dtype=np.float64)
    for i in range(out_size):
        source = max(scale * (i + 0.5) - 0.5, 0.0)
        low = int(source)
        high = low + 1 if low < in_size - 1 else low
        frac = min(max(source - low, 0.0), 1.0)
        matrix[i, low] += 1.0 - frac
        matrix[i, high] += frac
    return matrix


def pos_embed_matrices(config: SamViTConfig) -> tuple[np.ndarray, np.ndarray] | None:
    """(rows (H, Gh), cols (W, Gw)) resampling pos_embed from the pretrain grid to the input grid:
    ``pos[h, w] = sum_ij rows[h, i] cols[w, j] pos_embed[i, j]``; None where timm does not
    resample (the grids are equal)."""
    (gh, gw), (h, w) = config.pretrain_grid, config.grid
    if (gh, gw) == (h, w):
        return None
    return bicubic_antialias_matrix(gh, h), bicubic_antialias_matrix(gw, w)


def rel_pos_matrix(table_rows: int, size: int) -> np.ndarray | None:
    """(2*size - 1, table_rows): timm's linear resampling of a relative table for an attention of
    ``size`` positions along that axis; None where the table already has 2*size - 1 rows."""
    rows = 2 * size - 1
    return None if rows == table_rows else linear_matrix(table_rows, rows)


def rel_pos_index(size: int) -> np.ndarray:
    """(size, size) rows of the (resampled) table for query q and key k: q - k + size - 1
    (timm's relative coordinates when query and key sizes are equal, as in every SAM block)."""
    positions = np.arange(size)
    return (positions[:, None] - positions[None, :] + size - 1).astype(np.int64)


def attention_scale(config: SamViTConfig) -> float:
    return config.head_dim ** -0.5  # timm's scale
