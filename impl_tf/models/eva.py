"""EVA-02 (timm semantics and names). Twin: impl_torch/models/eva.py.

ViT's model with EVA's block: separate q/k/v projections (no k bias), RoPE on the patch tokens,
a sub-LN ``attn.norm`` before ``proj``, and a SwiGLU MLP with its own LayerNorm.  The RoPE table
comes from canon (NumPy, float64) and is a constant of each attention layer, cast to the
layer's dtype where it is used.
"""

from __future__ import annotations

import keras
from keras import layers, ops

from canon.models.eva import EvaConfig, rope_table
from canon.models.vit import head_dim, mlp_hidden, num_prefix_tokens
from impl_tf.models.vit import (Block, VisionTransformer, attend, build, constant, layer_norm, linear, merge_heads,
                                split_heads)
from impl_tf.registry import register_family


def rotate_pairs(x):
    """[x0, x1, x2, x3, ...] -> [-x1, x0, -x3, x2, ...] (timm's interleaved ``rot``)."""
    return ops.reshape(ops.stack([-x[..., 1::2], x[..., 0::2]], axis=-1), ops.shape(x))


class RotaryAttention(layers.Layer):
    """The weightless middle of EVA's attention: ``[q, k, v]`` (B, N, dim) split into heads, RoPE
    on q's and k's patch tokens, attended, heads merged.  A layer of its own (no torch module:
    compared inside ``attn``) so that ``attn.norm`` is given a layer's output."""

    canonical_layout = "plain"

    def __init__(self, config: EvaConfig, **kwargs):
        super().__init__(**kwargs)
        self.num_heads, self.scale, self.prefix = config.num_heads, head_dim(config) ** -0.5, num_prefix_tokens(config)
        self._rope_sin, self._rope_cos = rope_table(config)  # float64 NumPy, not weights

    def rope(self, x):
        """``x * cos + rot(x) * sin`` on the patch tokens; the class token passes unrotated."""
        sin, cos = constant(self._rope_sin, x), constant(self._rope_cos, x)
        patches = x[:, :, self.prefix:]
        return ops.concatenate([x[:, :, :self.prefix], patches * cos + rotate_pairs(patches) * sin], axis=2)

    def call(self, inputs):
        q, k, v = (split_heads(t, self.num_heads) for t in inputs)
        return merge_heads(attend(self.rope(q), self.rope(k), v, self.scale))


class EvaAttention(layers.Layer):
    def __init__(self, config: EvaConfig, **kwargs):
        super().__init__(**kwargs)
        dim = config.embed_dim
        self.q_proj = linear(dim, "q_proj", use_bias=config.qkv_bias)
        self.k_proj = linear(dim, "k_proj", use_bias=False)
        self.v_proj = linear(dim, "v_proj", use_bias=config.qkv_bias)
        self.attend = RotaryAttention(config, name="attend")
        self.norm = layer_norm(config, "norm")
        self.proj = linear(dim, "proj")

    def call(self, x):
        return self.proj(self.norm(self.attend([self.q_proj(x), self.k_proj(x), self.v_proj(x)])))


class SwiGLU(layers.Layer):
    """``fc2(norm(silu(fc1_g(x)) * fc1_x(x)))``."""

    def __init__(self, config: EvaConfig, **kwargs):
        super().__init__(**kwargs)
        hidden = mlp_hidden(config)
        self.fc1_g = linear(hidden, "fc1_g")
        self.fc1_x = linear(hidden, "fc1_x")
        self.act = layers.Activation("silu", name="act")
        self.gate = layers.Multiply(name="gate")  # no torch module: the norm is given a layer's output
        self.norm = layer_norm(config, "norm")
        self.fc2 = linear(config.embed_dim, "fc2")

    def call(self, x):
        return self.fc2(self.norm(self.gate([self.act(self.fc1_g(x)), self.fc1_x(x)])))


class EvaBlock(Block):
    attention, mlp_class = EvaAttention, SwiGLU


class Eva(VisionTransformer):
    block = EvaBlock


@register_family("eva")
def create_eva(config: EvaConfig) -> keras.Model:
    return build(Eva(config, name="eva"), config)
