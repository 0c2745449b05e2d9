"""Vision Transformer (timm semantics and state_dict names). Twin: impl_tf/models/vit.py.

A timm checkpoint loads with ``strict=True``.  timm's Identity/Dropout(0) modules (q_norm,
k_norm, attn_drop, proj_drop, ls1, drop_path1, mlp.drop1, ...) hold nothing and are left out.
``VisionTransformer`` is EVA-02's model too (impl_torch/models/eva.py gives it its block).
"""

from __future__ import annotations

import torch
from torch import nn

from canon.models.vit import (CLS_TOKEN_STD, TRUNC_NORMAL_STD, ViTConfig, has_patch_bias, head_dim,
                              mlp_hidden, num_prefix_tokens, num_tokens, pair, uses_fc_norm)
from impl_torch.registry import register_family


def linear(in_features: int, out_features: int, bias: bool = True) -> nn.Linear:
    """timm's Linear init: truncated normal (std 0.02, cut at 2 std), zero bias."""
    layer = nn.Linear(in_features, out_features, bias=bias)
    nn.init.trunc_normal_(layer.weight, std=TRUNC_NORMAL_STD, a=-2 * TRUNC_NORMAL_STD, b=2 * TRUNC_NORMAL_STD)
    if bias:
        nn.init.zeros_(layer.bias)
    return layer


def layer_norm(config, width: int | None = None) -> nn.LayerNorm:
    return nn.LayerNorm(width or config.embed_dim, eps=config.norm_eps)


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float) -> torch.Tensor:
    """softmax(q k^T * scale) v on (B, heads, N, hd), timm's unfused order (scale q first)."""
    return ((q * scale) @ k.transpose(-2, -1)).softmax(dim=-1) @ v


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """(B, heads, N, hd) -> (B, N, heads * hd)."""
    b, h, n, d = x.shape
    return x.transpose(1, 2).reshape(b, n, h * d)


class PatchEmbed(nn.Module):
    """A conv of kernel = stride = patch, then the (h, w) grid as a row-major token sequence."""

    def __init__(self, config):
        super().__init__()
        self.img_size = pair(config.img_size)
        patch = pair(config.patch_size)
        self.proj = nn.Conv2d(config.in_channels, config.embed_dim, patch, stride=patch, bias=has_patch_bias(config))

    def forward(self, x):
        if tuple(x.shape[-2:]) != self.img_size:  # timm's strict_img_size: pos_embed fixes the grid
            raise ValueError(f"input size {tuple(x.shape[-2:])} is not the model's img_size {self.img_size}")
        return self.proj(x).flatten(2).transpose(1, 2)


class Attention(nn.Module):
    """timm's fused ``qkv`` Linear (3 * dim), split as (B, N, 3, heads, hd)."""

    def __init__(self, config):
        super().__init__()
        self.num_heads, self.scale = config.num_heads, head_dim(config) ** -0.5
        self.qkv = linear(config.embed_dim, 3 * config.embed_dim, bias=config.qkv_bias)
        self.proj = linear(config.embed_dim, config.embed_dim)

    def forward(self, x):
        b, n, _ = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4).unbind(0)
        return self.proj(merge_heads(attend(q, k, v, self.scale)))


class Mlp(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.fc1 = linear(config.embed_dim, mlp_hidden(config))
        self.act = nn.GELU()  # exact (erf)
        self.fc2 = linear(mlp_hidden(config), config.embed_dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm: ``x + attn(norm1(x))``, then ``x + mlp(norm2(x))``."""

    attention, mlp_class = Attention, Mlp

    def __init__(self, config):
        super().__init__()
        self.norm1 = layer_norm(config)
        self.attn = self.attention(config)
        self.norm2 = layer_norm(config)
        self.mlp = self.mlp_class(config)

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


@register_family("vit")
class VisionTransformer(nn.Module):
    """patch_embed -> [cls_token] + pos_embed -> [norm_pre] -> blocks -> norm -> pool -> [fc_norm] -> head."""

    block = Block

    def __init__(self, config: ViTConfig):
        super().__init__()
        dim, self.global_pool, self.prefix = config.embed_dim, config.global_pool, num_prefix_tokens(config)
        self.patch_embed = PatchEmbed(config)
        self.cls_token = nn.Parameter(torch.randn(1, 1, dim) * CLS_TOKEN_STD) if config.class_token else None
        self.pos_embed = nn.Parameter(torch.empty(1, num_tokens(config), dim))
        nn.init.trunc_normal_(self.pos_embed, std=TRUNC_NORMAL_STD, a=-2 * TRUNC_NORMAL_STD, b=2 * TRUNC_NORMAL_STD)
        self.pos_drop = nn.Dropout(0.0)  # timm's, rate 0: where the tokens are compared
        self.norm_pre = layer_norm(config) if config.pre_norm else None
        self.blocks = nn.Sequential(*(self.block(config) for _ in range(config.depth)))
        fc_norm = uses_fc_norm(config)
        self.norm = None if fc_norm else layer_norm(config)
        self.fc_norm = layer_norm(config) if fc_norm else None
        self.head = linear(dim, config.num_classes)

    def tokens(self, x):
        x = self.patch_embed(x)
        if self.cls_token is not None:
            x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        return self.pos_drop(x + self.pos_embed)

    def pre_logits(self, x):
        """The pooled embedding the head classifies (a kNN feature)."""
        x = self.tokens(x)
        if self.norm_pre is not None:
            x = self.norm_pre(x)
        x = self.blocks(x)
        if self.norm is not None:
            x = self.norm(x)
        x = x[:, 0] if self.global_pool == "token" else x[:, self.prefix:].mean(dim=1)
        return x if self.fc_norm is None else self.fc_norm(x)

    def forward(self, x):
        return self.head(self.pre_logits(x))


__all__ = ["Attention", "Block", "Mlp", "PatchEmbed", "VisionTransformer", "attend", "layer_norm", "linear",
           "merge_heads"]
