"""Vision Transformer (timm semantics and names). Twin: impl_torch/models/vit.py.

A subclassed Keras model, so its layers are named by the attributes that hold them, as torch's
modules are (``blocks.0.attn.qkv``), and ``cls_token`` / ``pos_embed`` are the model's own
variables: the canonical names of a top-level ``nn.Parameter`` (parity.adapters.keras_model maps a
container's free variables by their attribute).  The projections are stock ``Dense`` layers,
norms stock ``LayerNormalization``; the attention and blocks are small containers around them,
compared at their own outputs.  Tokens are (B, N, C) in both frameworks ("plain").
``VisionTransformer`` is EVA-02's model too (impl_tf/models/eva.py gives it its block).
"""

from __future__ import annotations

import keras
import numpy as np
from keras import layers, ops

from canon.models.vit import (CLS_TOKEN_STD, TRUNC_NORMAL_STD, ViTConfig, has_patch_bias, head_dim, mlp_hidden,
                              num_prefix_tokens, num_tokens, pair, uses_fc_norm)
from impl_tf import initializers as init
from impl_tf.registry import register_family


def linear(units: int, name: str, use_bias: bool = True) -> layers.Dense:
    """timm's Linear init: truncated normal (std 0.02, cut at 2 std), zero bias."""
    kernel = keras.initializers.TruncatedNormal(stddev=TRUNC_NORMAL_STD)
    return layers.Dense(units, use_bias=use_bias, kernel_initializer=kernel, bias_initializer="zeros", name=name)


def layer_norm(config, name: str) -> layers.LayerNormalization:
    return layers.LayerNormalization(epsilon=config.norm_eps, name=name)


def constant(value, like):
    """A Python number or NumPy table in ``like``'s dtype, rounded once from float64 (a Python
    float given to TF goes through float32 first); an integer table (an index) as it is."""
    array = np.asarray(value)
    if array.dtype.kind in "iub":
        return ops.convert_to_tensor(array)
    return ops.convert_to_tensor(array.astype(np.float64).astype(keras.backend.standardize_dtype(like.dtype)))


def attend(q, k, v, scale: float):
    """softmax(q k^T * scale) v on (B, heads, N, hd), timm's unfused order (scale q first)."""
    scores = ops.matmul(q * constant(scale, q), ops.transpose(k, (0, 1, 3, 2)))
    return ops.matmul(ops.softmax(scores, axis=-1), v)


def split_heads(x, heads: int):
    """(B, N, heads * hd) -> (B, heads, N, hd)."""
    n, width = x.shape[1], x.shape[2]
    return ops.transpose(ops.reshape(x, (-1, n, heads, width // heads)), (0, 2, 1, 3))


def merge_heads(x):
    """(B, heads, N, hd) -> (B, N, heads * hd)."""
    heads, n, d = x.shape[1], x.shape[2], x.shape[3]
    return ops.reshape(ops.transpose(x, (0, 2, 1, 3)), (-1, n, heads * d))


@keras.saving.register_keras_serializable(package="twinframe")
class PatchTokens(layers.Layer):
    """(B, h, w, C) -> (B, h * w, C), row-major: torch's ``flatten(2).transpose(1, 2)`` of NCHW."""

    canonical_layout = "plain"

    def call(self, x):
        return ops.reshape(x, (-1, x.shape[1] * x.shape[2], x.shape[3]))

    def compute_output_shape(self, input_shape):
        n, h, w, c = input_shape
        return (n, None if None in (h, w) else h * w, c)


class PatchEmbed(layers.Layer):
    """A conv of kernel = stride = patch, then the grid as tokens (``tokens`` has no torch module)."""

    def __init__(self, config, **kwargs):
        super().__init__(**kwargs)
        self.img_size = pair(config.img_size)
        patch = pair(config.patch_size)
        fan_in = config.in_channels * patch[0] * patch[1]
        self.proj = layers.Conv2D(config.embed_dim, patch, strides=patch, padding="valid",
                                  use_bias=has_patch_bias(config), kernel_initializer=init.torch_default_kernel(),
                                  bias_initializer=init.torch_default_bias(fan_in), name="proj")  # torch's, as timm's
        self.tokens = PatchTokens(name="tokens")

    def call(self, x):
        if tuple(x.shape[1:3]) != self.img_size:  # timm's strict_img_size: pos_embed fixes the grid
            raise ValueError(f"input size {tuple(x.shape[1:3])} is not the model's img_size {self.img_size}")
        return self.tokens(self.proj(x))


@keras.saving.register_keras_serializable(package="twinframe")
class FusedAttention(layers.Layer):
    """The weightless middle of timm's Attention: ``qkv`` output (B, N, 3 * dim) split as
    (B, N, 3, heads, hd), attended, heads merged.  A layer of its own (no torch module: compared
    inside ``attn``) so that ``proj`` is given a layer's output, of a known layout."""

    canonical_layout = "plain"

    def __init__(self, num_heads: int, scale: float, **kwargs):
        super().__init__(**kwargs)
        self.num_heads, self.scale = num_heads, scale

    def call(self, qkv):
        n, width = qkv.shape[1], qkv.shape[2] // 3
        qkv = ops.transpose(ops.reshape(qkv, (-1, n, 3, self.num_heads, width // self.num_heads)), (2, 0, 3, 1, 4))
        return merge_heads(attend(qkv[0], qkv[1], qkv[2], self.scale))

    def get_config(self):
        return {**super().get_config(), "num_heads": self.num_heads, "scale": self.scale}


class Attention(layers.Layer):
    """timm's fused ``qkv`` (3 * dim), split as (B, N, 3, heads, hd), then ``proj``."""

    def __init__(self, config, **kwargs):
        super().__init__(**kwargs)
        self.qkv = linear(3 * config.embed_dim, "qkv", use_bias=config.qkv_bias)
        self.attend = FusedAttention(config.num_heads, head_dim(config) ** -0.5, name="attend")
        self.proj = linear(config.embed_dim, "proj")

    def call(self, x):
        return self.proj(self.attend(self.qkv(x)))


class Mlp(layers.Layer):
    def __init__(self, config, **kwargs):
        super().__init__(**kwargs)
        self.fc1 = linear(mlp_hidden(config), "fc1")
        self.act = layers.Activation("gelu", name="act")  # Keras' gelu: exact (erf) by default
        self.fc2 = linear(config.embed_dim, "fc2")

    def call(self, x):
        return self.fc2(self.act(self.fc1(x)))


class Block(layers.Layer):
    """Pre-norm: ``x + attn(norm1(x))``, then ``x + mlp(norm2(x))``; the residual sums are Add
    layers (no torch module) so that the block's output is a layer's, of a known layout."""

    attention, mlp_class = Attention, Mlp

    def __init__(self, config, **kwargs):
        super().__init__(**kwargs)
        self.norm1 = layer_norm(config, "norm1")
        self.attn = self.attention(config, name="attn")
        self.add1 = layers.Add(name="add1")
        self.norm2 = layer_norm(config, "norm2")
        self.mlp = self.mlp_class(config, name="mlp")
        self.add2 = layers.Add(name="add2")

    def call(self, x):
        x = self.add1([x, self.attn(self.norm1(x))])
        return self.add2([x, self.mlp(self.norm2(x))])


@keras.saving.register_keras_serializable(package="twinframe")
class TokenEmbed(layers.Layer):
    """``[cls_token] + patches``, plus ``pos_embed``: given the model's own variables as inputs, so
    that they keep their top-level canonical names and the tokens come from a layer ("plain")."""

    canonical_layout = "plain"

    def call(self, inputs):
        *cls_token, pos_embed, patches = inputs
        if cls_token:
            batch_token = ops.broadcast_to(cls_token[0], (ops.shape(patches)[0], 1, patches.shape[2]))
            patches = ops.concatenate([batch_token, patches], axis=1)
        return patches + pos_embed


class VisionTransformer(keras.Model):
    """patch_embed -> [cls_token] + pos_embed -> [norm_pre] -> blocks -> norm -> pool -> [fc_norm] -> head."""

    block = Block

    def __init__(self, config: ViTConfig, **kwargs):
        super().__init__(**kwargs)
        dim, self.global_pool, self.prefix = config.embed_dim, config.global_pool, num_prefix_tokens(config)
        self.patch_embed = PatchEmbed(config, name="patch_embed")
        tiny = keras.initializers.RandomNormal(stddev=CLS_TOKEN_STD)
        self.cls_token = self.add_weight(shape=(1, 1, dim), initializer=tiny, name="cls_token") \
            if config.class_token else None
        self.pos_embed = self.add_weight(shape=(1, num_tokens(config), dim), name="pos_embed",
                                         initializer=keras.initializers.TruncatedNormal(stddev=TRUNC_NORMAL_STD))
        self.token_embed = TokenEmbed(name="token_embed")
        self.pos_drop = layers.Dropout(0.0, name="pos_drop")  # timm's, rate 0: where the tokens are compared
        self.norm_pre = layer_norm(config, "norm_pre") if config.pre_norm else None
        self.blocks = [self.block(config, name=f"blocks.{i}") for i in range(config.depth)]
        fc_norm = uses_fc_norm(config)
        self.norm = None if fc_norm else layer_norm(config, "norm")
        self.fc_norm = layer_norm(config, "fc_norm") if fc_norm else None
        self.head = linear(config.num_classes, "head")

    def tokens(self, x):
        held = [self.pos_embed] if self.cls_token is None else [self.cls_token, self.pos_embed]
        return self.pos_drop(self.token_embed([*held, self.patch_embed(x)]))

    def pre_logits(self, x):
        """The pooled embedding the head classifies (a kNN feature)."""
        x = self.tokens(x)
        if self.norm_pre is not None:
            x = self.norm_pre(x)
        for block in self.blocks:
            x = block(x)
        if self.norm is not None:
            x = self.norm(x)
        x = x[:, 0] if self.global_pool == "token" else ops.mean(x[:, self.prefix:], axis=1)
        return x if self.fc_norm is None else self.fc_norm(x)

    def call(self, x):
        return self.head(self.pre_logits(x))


def build(model: VisionTransformer, config) -> VisionTransformer:
    """Create the weights with one pass on zeros at the model's fixed input size."""
    h, w = pair(config.img_size)
    model(ops.zeros((1, h, w, config.in_channels), dtype=keras.config.floatx()))
    return model


@register_family("vit")
def create_vit(config: ViTConfig) -> keras.Model:
    return build(VisionTransformer(config, name="vit"), config)
