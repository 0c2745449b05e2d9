"""EVA-02 (timm semantics and state_dict names). Twin: impl_tf/models/eva.py.

ViT's model with EVA's block: separate q/k/v projections (no k bias), RoPE on the patch tokens,
a sub-LN ``attn.norm`` before ``proj``, and a SwiGLU MLP with its own LayerNorm.  The RoPE table
comes from canon (NumPy, float64) and is a constant of each attention module, cast to the input's
dtype where it is used: not in the state_dict, as timm's ``rope.pos_embed`` (a non-persistent
buffer) is not.
"""

from __future__ import annotations

import torch
from torch import nn

from canon.models.eva import EvaConfig, rope_table
from canon.models.vit import head_dim, mlp_hidden, num_prefix_tokens
from impl_torch.models.vit import Block, VisionTransformer, attend, layer_norm, linear, merge_heads
from impl_torch.registry import register_family


def rotate_pairs(x: torch.Tensor) -> torch.Tensor:
    """[x0, x1, x2, x3, ...] -> [-x1, x0, -x3, x2, ...] (timm's interleaved ``rot``)."""
    return torch.stack([-x[..., 1::2], x[..., 0::2]], dim=-1).reshape(x.shape)


class EvaAttention(nn.Module):
    def __init__(self, config: EvaConfig):
        super().__init__()
        dim = config.embed_dim
        self.num_heads, self.scale, self.prefix = config.num_heads, head_dim(config) ** -0.5, num_prefix_tokens(config)
        self.q_proj = linear(dim, dim, bias=config.qkv_bias)
        self.k_proj = linear(dim, dim, bias=False)
        self.v_proj = linear(dim, dim, bias=config.qkv_bias)
        self.norm = layer_norm(config)
        self.proj = linear(dim, dim)
        # float64 constants, not buffers: cast where used, whatever .to() the model has seen
        self._rope_sin, self._rope_cos = (torch.from_numpy(t) for t in rope_table(config))

    def heads(self, x):
        b, n, _ = x.shape
        return x.reshape(b, n, self.num_heads, -1).transpose(1, 2)

    def rope(self, x):
        """``x * cos + rot(x) * sin`` on the patch tokens; the class token passes unrotated."""
        sin, cos = self._rope_sin.to(x), self._rope_cos.to(x)  # x's dtype and device
        patches = x[:, :, self.prefix:]
        return torch.cat([x[:, :, :self.prefix], patches * cos + rotate_pairs(patches) * sin], dim=2)

    def forward(self, x):
        q, k, v = self.heads(self.q_proj(x)), self.heads(self.k_proj(x)), self.heads(self.v_proj(x))
        x = merge_heads(attend(self.rope(q), self.rope(k), v, self.scale))
        return self.proj(self.norm(x))


class SwiGLU(nn.Module):
    """``fc2(norm(silu(fc1_g(x)) * fc1_x(x)))``."""

    def __init__(self, config: EvaConfig):
        super().__init__()
        hidden = mlp_hidden(config)
        self.fc1_g = linear(config.embed_dim, hidden)
        self.fc1_x = linear(config.embed_dim, hidden)
        self.act = nn.SiLU()
        self.norm = layer_norm(config, hidden)
        self.fc2 = linear(hidden, config.embed_dim)

    def forward(self, x):
        return self.fc2(self.norm(self.act(self.fc1_g(x)) * self.fc1_x(x)))


class EvaBlock(Block):
    attention, mlp_class = EvaAttention, SwiGLU


@register_family("eva")
class Eva(VisionTransformer):
    block = EvaBlock
