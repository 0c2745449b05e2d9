"""SAM ViT image encoder (timm's ``samvit_base_patch16``: semantics and state_dict names, so a timm
checkpoint loads with strict=True).  Twin: impl_tf/models/samvit.py.

Tokens are an (N, H, W, C) grid from the patch embedding to the last block (the same axes as in
Keras); the neck works on NCHW.  The resampling matrices and relative-position indices are
canon's NumPy constants (float64), made in the activations' dtype on each use, so a float64 model
computes with float64 constants.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from canon.models.samvit import (
    BlockPlan, SamViTConfig, attention_scale, block_plan, padded_grid, pos_embed_matrices, rel_pos_index,
    rel_pos_matrix,
)
from impl_torch.layers import Add
from impl_torch.registry import register_family

TABLE_INIT_STD = 0.02  # timm zeros pos_embed and the relative tables (pretrained weights replace them);
# non-zero here so that the checks see the paths they feed


def _constant(array: np.ndarray, like: torch.Tensor) -> torch.Tensor:
    return torch.from_numpy(array).to(device=like.device, dtype=like.dtype if array.dtype.kind == "f" else None)


class ToGrid(nn.Module):
    """NCHW feature map -> (N, H, W, C) token grid (timm's PatchEmbed output format NHWC)."""

    def forward(self, x):
        return x.permute(0, 2, 3, 1)


class ToImage(nn.Module):
    """(N, H, W, C) token grid -> NCHW map for the neck's convolutions."""

    def forward(self, x):
        return x.permute(0, 3, 1, 2)


class PatchEmbed(nn.Module):
    def __init__(self, config: SamViTConfig):
        super().__init__()
        p = config.patch_size
        self.proj = nn.Conv2d(config.in_channels, config.embed_dim, p, stride=p)
        self.to_grid = ToGrid()

    def forward(self, x):
        return self.to_grid(self.proj(x))


class PosEmbedAdd(nn.Module):
    """tokens + pos_embed, the table resampled to the grid first where the grids differ (torch's
    bicubic with antialias, as two constant matrices: rows, then columns).  The table comes as a
    keyword: the model's own parameter, not an activation (a forward hook sees the tokens only,
    as Keras' layer, which reads the model's variable itself)."""

    def __init__(self, matrices: tuple[np.ndarray, np.ndarray] | None):
        super().__init__()
        self.matrices = matrices

    def forward(self, x, *, table):
        if self.matrices is not None:
            rows, cols = self.matrices
            table = torch.einsum("hi,nijc->nhjc", _constant(rows, table), table)
            table = torch.einsum("wj,nhjc->nhwc", _constant(cols, table), table)
        return x + table


class Attend(nn.Module):
    """The attention itself on qkv (B, h, w, 3C): softmax(q k^T * scale + bias) v, heads merged
    back to (B, h, w, C); the decomposed relative-position bias ``q . Rh[qh, kh] + q . Rw[qw, kw]``
    (from q before the scale, as timm) comes from the tables it is given."""

    def __init__(self, config: SamViTConfig, plan: BlockPlan):
        super().__init__()
        self.heads, self.head_dim, self.scale = config.num_heads, config.head_dim, attention_scale(config)
        self.size = plan.attention_size
        self.resample = [rel_pos_matrix(rows, size) for rows, size in zip(plan.table_rows, self.size)]
        self.index = [rel_pos_index(size) for size in self.size]

    def _relative(self, table, axis: int):
        """(size, size, head_dim): the table resampled to 2*size - 1 rows (timm's linear
        F.interpolate), then read at q - k + size - 1."""
        if self.resample[axis] is not None:
            table = _constant(self.resample[axis], table) @ table
        return table[_constant(self.index[axis], table)]

    def _bias(self, q, rel_pos_h, rel_pos_w):
        """(B, heads, h*w, h*w) from q (B, heads, h*w, head_dim)."""
        h, w = self.size
        grid_q = q.reshape(-1, self.heads, h, w, self.head_dim)
        rel_h = torch.einsum("bnhwc,hkc->bnhwk", grid_q, self._relative(rel_pos_h, 0))
        rel_w = torch.einsum("bnhwc,wkc->bnhwk", grid_q, self._relative(rel_pos_w, 1))
        return (rel_h[..., :, None] + rel_w[..., None, :]).reshape(-1, self.heads, h * w, h * w)

    def forward(self, qkv, rel_pos_h=None, rel_pos_w=None):
        h, w = self.size
        qkv = qkv.reshape(-1, h * w, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]  # (B, heads, h*w, head_dim)
        logits = (q * self.scale) @ k.transpose(-2, -1)
        if rel_pos_h is not None:
            logits = logits + self._bias(q, rel_pos_h, rel_pos_w)
        out = logits.softmax(dim=-1) @ v
        return out.permute(0, 2, 1, 3).reshape(-1, h, w, self.heads * self.head_dim)


class Attention(nn.Module):
    """qkv -> attend -> proj over one (h, w) grid; timm's Attention names (qkv, proj, rel_pos_h,
    rel_pos_w)."""

    def __init__(self, config: SamViTConfig, plan: BlockPlan):
        super().__init__()
        dim = config.embed_dim
        self.qkv = nn.Linear(dim, 3 * dim)
        self.attend = Attend(config, plan)
        self.proj = nn.Linear(dim, dim)
        self.use_rel_pos = config.use_rel_pos
        if self.use_rel_pos:
            self.rel_pos_h = nn.Parameter(torch.randn(plan.table_rows[0], config.head_dim) * TABLE_INIT_STD)
            self.rel_pos_w = nn.Parameter(torch.randn(plan.table_rows[1], config.head_dim) * TABLE_INIT_STD)

    def forward(self, x):
        tables = (self.rel_pos_h, self.rel_pos_w) if self.use_rel_pos else ()
        return self.proj(self.attend(self.qkv(x), *tables))


class WindowPartition(nn.Module):
    """(B, H, W, C) -> (B * windows, ws, ws, C), the grid zero-padded bottom/right first."""

    def __init__(self, window: int, grid: tuple[int, int]):
        super().__init__()
        self.window, self.grid = window, grid
        self.padded = padded_grid(grid, window)

    def forward(self, x):
        ws, (hp, wp) = self.window, self.padded
        x = nn.functional.pad(x, (0, 0, 0, wp - self.grid[1], 0, hp - self.grid[0]))
        x = x.reshape(-1, hp // ws, ws, wp // ws, ws, x.shape[-1]).permute(0, 1, 3, 2, 4, 5)
        return x.reshape(-1, ws, ws, x.shape[-1])


class WindowUnpartition(nn.Module):
    """The inverse of WindowPartition: windows back to the padded grid, cropped to (H, W)."""

    def __init__(self, window: int, grid: tuple[int, int]):
        super().__init__()
        self.window, self.grid = window, grid
        self.padded = padded_grid(grid, window)

    def forward(self, windows):
        ws, (hp, wp), (h, w) = self.window, self.padded, self.grid
        x = windows.reshape(-1, hp // ws, wp // ws, ws, ws, windows.shape[-1]).permute(0, 1, 3, 2, 4, 5)
        return x.reshape(-1, hp, wp, windows.shape[-1])[:, :h, :w, :]


class Mlp(nn.Module):
    def __init__(self, config: SamViTConfig):
        super().__init__()
        self.fc1 = nn.Linear(config.embed_dim, config.mlp_hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(config.mlp_hidden, config.embed_dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm block on the grid: windowed (or global) attention, then the MLP."""

    def __init__(self, config: SamViTConfig, plan: BlockPlan):
        super().__init__()
        self.norm1 = nn.LayerNorm(config.embed_dim, eps=config.norm_eps)
        if plan.window:
            self.window_partition = WindowPartition(plan.window, config.grid)
        self.attn = Attention(config, plan)
        if plan.window:
            self.window_unpartition = WindowUnpartition(plan.window, config.grid)
        self.add1 = Add()
        self.norm2 = nn.LayerNorm(config.embed_dim, eps=config.norm_eps)
        self.mlp = Mlp(config)
        self.add2 = Add()
        self.windowed = bool(plan.window)

    def forward(self, x):
        y = self.norm1(x)
        if self.windowed:
            y = self.window_unpartition(self.attn(self.window_partition(y)))
        else:
            y = self.attn(y)
        x = self.add1(x, y)
        return self.add2(x, self.mlp(self.norm2(x)))


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of an NCHW map (timm's LayerNorm2d)."""

    def forward(self, x):
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class GlobalAvgPool(nn.Module):
    """NCHW -> (N, C) mean (timm's SelectAdaptivePool2d('avg', flatten=True))."""

    def forward(self, x):
        return x.mean(dim=(2, 3))


class Head(nn.Module):
    """timm's ClassifierHead: average pool, then ``fc`` (absent when num_classes is 0); fc's input
    is the pre-logit embedding."""

    def __init__(self, config: SamViTConfig):
        super().__init__()
        self.global_pool = GlobalAvgPool()
        self.fc = nn.Linear(config.neck_channels, config.num_classes) if config.num_classes else None

    def forward(self, x):
        x = self.global_pool(x)
        return x if self.fc is None else self.fc(x)


def _neck(config: SamViTConfig) -> nn.Sequential:
    c, n = config.embed_dim, config.neck_channels
    return nn.Sequential(
        nn.Conv2d(c, n, 1, bias=False), LayerNorm2d(n, eps=config.neck_eps),
        nn.Conv2d(n, n, 3, padding=1, bias=False), LayerNorm2d(n, eps=config.neck_eps),
    )


@register_family("samvit")
class SamViT(nn.Module):
    def __init__(self, config: SamViTConfig):
        super().__init__()
        self.config = config
        gh, gw = config.pretrain_grid
        self.patch_embed = PatchEmbed(config)
        self.pos_embed = nn.Parameter(torch.randn(1, gh, gw, config.embed_dim) * TABLE_INIT_STD)
        self.pos_add = PosEmbedAdd(pos_embed_matrices(config))
        self.blocks = nn.Sequential(*(Block(config, plan) for plan in block_plan(config)))
        self.to_image = ToImage()
        self.neck = _neck(config)
        self.head = Head(config)

    def forward(self, x):
        if tuple(x.shape[-2:]) != self.config.image_size:
            raise ValueError(f"samvit was built for {self.config.image_size} inputs (its resampling matrices are "
                             f"fixed by the config's input_size), got {tuple(x.shape[-2:])}")
        x = self.pos_add(self.patch_embed(x), table=self.pos_embed)
        x = self.neck(self.to_image(self.blocks(x)))
        return self.head(x)
