"""EVA-02 with timm's semantics and state_dict names (timm/models/eva.py), and its RoPE table.

``eva02_base_patch16_clip_224``: a ViT-B/16 whose attention has separate ``q_proj`` (bias),
``k_proj`` (no bias) and ``v_proj`` (bias), a sub-LN ``attn.norm`` before ``proj``, rotary
position embedding on the patch tokens (the class token is left as it is) besides the absolute
``pos_embed``, and a SwiGLU MLP ``fc2(norm(silu(fc1_g(x)) * fc1_x(x)))``.  LayerNorm eps 1e-6,
class-token pooling, no ``fc_norm``, a 512-wide head (the CLIP embedding).

The RoPE table is not in the state_dict: :func:`rope_table` computes it here, once, for both twins.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from canon.errors import ConfigError
from canon.models._registry import OPENAI_CLIP, register_models
from canon.models.vit import grid_size, head_dim, validate_common


@register_models({"eva02_base_patch16_clip_224": {}}, mean_std=OPENAI_CLIP)
@dataclass(frozen=True)
class EvaConfig:
    img_size: int | tuple[int, int] = 224
    patch_size: int | tuple[int, int] = 16
    in_channels: int = 3
    num_classes: int = 512
    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_ratio: float = 4 * 2 / 3  # SwiGLU hidden int(768 * 8/3) = 2048
    qkv_bias: bool = True  # q_proj and v_proj; k_proj never has one
    class_token: bool = True
    pre_norm: bool = False  # timm's use_pre_transformer_norm: a LayerNorm `norm_pre` before the blocks
    norm_eps: float = 1e-6
    patch_bias: bool | None = None  # None: timm's default, no bias when pre_norm
    global_pool: str = "token"
    fc_norm: bool | None = None  # None: timm's default, on for 'avg'
    rope_temperature: float = 10000.0
    # timm's "ref_feat_shape": the grid the rotary positions are scaled to (EVA-02 was pretrained
    # at 224/14 = 16 patches); None uses the grid itself
    rope_ref_grid: tuple[int, int] | None = (16, 16)
    rope_grid_offset: float = 0.0
    family: str = "eva"

    def validate(self) -> None:
        validate_common(self, "eva")
        if head_dim(self) % 4:
            raise ConfigError(f"eva head_dim {head_dim(self)} must be a multiple of 4 (two axes of sin/cos pairs)")
        if self.rope_ref_grid is not None and (len(tuple(self.rope_ref_grid)) != 2 or min(self.rope_ref_grid) < 1):
            raise ConfigError(f"eva rope_ref_grid must be (rows, cols) >= 1 or None, got {self.rope_ref_grid!r}")
        if self.rope_temperature <= 0:
            raise ConfigError(f"eva rope_temperature must be > 0, got {self.rope_temperature}")


def rope_angles(config: EvaConfig) -> np.ndarray:
    """The rotary angles, (patches, head_dim // 2): row-major patch order, then the row axis's
    bands and the column axis's bands.

    timm computes them in float32: bands 1 / temperature**(i / n), n = head_dim // 4; positions
    arange(grid) / grid * ref_grid; angle = position * band.  Each of those float32 roundings is
    reproduced here exactly (one IEEE operation each), so the angles are timm's bit for bit."""
    bands_per_axis = head_dim(config) // 4
    exponent = np.arange(bands_per_axis, dtype=np.float32) / np.float32(bands_per_axis)
    power = (np.float64(config.rope_temperature) ** exponent.astype(np.float64)).astype(np.float32)
    bands = np.float32(1.0) / power
    grid = grid_size(config)
    reference = grid if config.rope_ref_grid is None else tuple(config.rope_ref_grid)
    axes = []
    for size, ref in zip(grid, reference):
        t = np.arange(size, dtype=np.float32) + np.float32(config.rope_grid_offset)
        if config.rope_ref_grid is not None:
            t = (t / np.float32(size)) * np.float32(ref)
        axes.append(t)
    rows, cols = np.meshgrid(*axes, indexing="ij")
    angles = np.stack([rows, cols], axis=-1)[..., None] * bands  # (gh, gw, 2, bands), float32 products
    return angles.reshape(grid[0] * grid[1], 2 * bands_per_axis)


def rope_table(config: EvaConfig) -> tuple[np.ndarray, np.ndarray]:
    """(sin, cos), each (patches, head_dim) in float64, every value repeated for its interleaved
    pair (x0, x1), (x2, x3), ...; the twins cast it to the model's dtype where it is used.

    sin and cos are taken in float64 of timm's float32 angles, so the float32 cast is the
    correctly rounded value; torch's own float32 sin/cos (what timm's buffer holds) is within one
    ulp of it and not always equal (EVA-02-B at 224, timm 1.0.22 / torch 2.14 CPU: 336 of 12544 sin and
    840 of 12544 cos values are 1 ulp off, none more; max 6e-8)."""
    angles = rope_angles(config).astype(np.float64)
    return np.repeat(np.sin(angles), 2, axis=-1), np.repeat(np.cos(angles), 2, axis=-1)

