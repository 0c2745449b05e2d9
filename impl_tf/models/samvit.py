"""SAM ViT image encoder (timm's ``samvit_base_patch16`` semantics; layers named as the torch
modules).  Twin: impl_torch/models/samvit.py.

A functional model (so ``head.fc`` is its last Dense and its input the pre-logit embedding, as
impl_tf.training reads them).  timm's ``pos_embed`` is a parameter of the model itself (no module
holds it), so it is a variable of the model: made before the graph, read by ``pos_add`` without
being that layer's, and given to the model once built (a canonical name with no layer prefix).
The token grid (N, H, W, C) has the same axes as torch's (layout "plain"); the neck sees it as an
NHWC map.  The resampling matrices and relative-position indices are canon's NumPy constants,
made in the activations' dtype on each use.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from canon.models.samvit import (
    BlockPlan, SamViTConfig, attention_scale, block_plan, padded_grid, pos_embed_matrices, rel_pos_index,
    rel_pos_matrix,
)
from impl_tf import initializers as init
from impl_tf.layers import PaddedConv2D
from impl_tf.models.vit import constant
from impl_tf.registry import register_family

TABLE_INIT_STD = 0.02  # as the torch twin (timm zeros these; pretrained weights replace them)


def _dense(units: int, fan_in: int, name: str, use_bias: bool = True) -> keras.layers.Dense:
    return keras.layers.Dense(units, use_bias=use_bias, kernel_initializer=init.torch_default_kernel(),
                              bias_initializer=init.torch_default_bias(fan_in), name=name)


class ToGrid(keras.layers.Layer):
    """The patch embedding's NHWC map read as the (N, H, W, C) token grid: torch permutes
    NCHW -> NHWC here, Keras' map already has those axes."""

    canonical_layout = "plain"

    def call(self, x):
        return ops.copy(x)


class ToImage(keras.layers.Layer):
    """The token grid read as an NHWC map for the neck (torch permutes to NCHW here)."""

    canonical_layout = "channels"

    def call(self, x):
        return ops.copy(x)


def patch_embed(x, config: SamViTConfig):
    p = config.patch_size
    fan_in = config.in_channels * p * p
    x = keras.layers.Conv2D(config.embed_dim, p, strides=p, kernel_initializer=init.torch_default_kernel(),
                            bias_initializer=init.torch_default_bias(fan_in), name="patch_embed.proj")(x)
    return ToGrid(name="patch_embed.to_grid")(x)


class Held:
    """A variable a layer reads without owning it (Keras would make an attribute variable the
    layer's own): the model's pos_embed, read by pos_add."""

    def __init__(self, variable):
        self.variable = variable


class PosEmbedAdd(keras.layers.Layer):
    """tokens + pos_embed, the table resampled to the grid first where the grids differ (torch's
    bicubic with antialias, as two constant matrices: rows, then columns)."""

    canonical_layout = "plain"

    def __init__(self, table: Held, matrices: tuple[np.ndarray, np.ndarray] | None, **kwargs):
        super().__init__(**kwargs)
        self.table, self.matrices = table, matrices

    def call(self, x):
        table = ops.cast(self.table.variable, x.dtype)
        if self.matrices is not None:
            rows, cols = self.matrices
            table = ops.einsum("hi,nijc->nhjc", constant(rows, table), table)
            table = ops.einsum("wj,nhjc->nhwc", constant(cols, table), table)
        return x + table


class Attend(keras.layers.Layer):
    """The attention itself on qkv (B, h, w, 3C): softmax(q k^T * scale + bias) v, heads merged
    back to (B, h, w, C); the decomposed relative-position bias ``q . Rh[qh, kh] + q . Rw[qw, kw]``
    (from q before the scale) comes from the tables it is given."""

    canonical_layout = "plain"

    def __init__(self, config: SamViTConfig, plan: BlockPlan, **kwargs):
        super().__init__(**kwargs)
        self.heads, self.head_dim, self.scale = config.num_heads, config.head_dim, attention_scale(config)
        self.size = plan.attention_size
        self.resample = [rel_pos_matrix(rows, size) for rows, size in zip(plan.table_rows, self.size)]
        self.index = [rel_pos_index(size) for size in self.size]

    def _relative(self, table, axis: int):
        """(size, size, head_dim): the table resampled to 2*size - 1 rows, read at q - k + size - 1."""
        if self.resample[axis] is not None:
            table = ops.matmul(constant(self.resample[axis], table), table)
        return ops.take(table, constant(self.index[axis], table), axis=0)

    def _bias(self, q, rel_pos_h, rel_pos_w):
        h, w = self.size
        grid_q = ops.reshape(q, (-1, self.heads, h, w, self.head_dim))
        rel_h = ops.einsum("bnhwc,hkc->bnhwk", grid_q, self._relative(rel_pos_h, 0))
        rel_w = ops.einsum("bnhwc,wkc->bnhwk", grid_q, self._relative(rel_pos_w, 1))
        return ops.reshape(ops.expand_dims(rel_h, -1) + ops.expand_dims(rel_w, -2), (-1, self.heads, h * w, h * w))

    def call(self, qkv, rel_pos_h=None, rel_pos_w=None):
        h, w = self.size
        qkv = ops.transpose(ops.reshape(qkv, (-1, h * w, 3, self.heads, self.head_dim)), (2, 0, 3, 1, 4))
        q, k, v = qkv[0], qkv[1], qkv[2]  # (B, heads, h*w, head_dim)
        logits = ops.matmul(q * self.scale, ops.transpose(k, (0, 1, 3, 2)))
        if rel_pos_h is not None:
            logits = logits + self._bias(q, rel_pos_h, rel_pos_w)
        out = ops.matmul(ops.softmax(logits, axis=-1), v)
        return ops.reshape(ops.transpose(out, (0, 2, 1, 3)), (-1, h, w, self.heads * self.head_dim))


class Attention(keras.layers.Layer):
    """qkv -> attend -> proj over one (h, w) grid (torch's Attention); ``rel_pos_h``/``rel_pos_w``
    are its own variables."""

    def __init__(self, config: SamViTConfig, plan: BlockPlan, **kwargs):
        super().__init__(**kwargs)
        dim, n = config.embed_dim, kwargs["name"]
        self.qkv = _dense(3 * dim, dim, f"{n}.qkv")
        self.attend = Attend(config, plan, name=f"{n}.attend")
        self.proj = _dense(dim, dim, f"{n}.proj")
        self.use_rel_pos = config.use_rel_pos
        if self.use_rel_pos:
            table = lambda rows, name: self.add_weight(shape=(rows, config.head_dim), name=name,
                                                       initializer=init.normal(TABLE_INIT_STD))
            self.rel_pos_h = table(plan.table_rows[0], "rel_pos_h")
            self.rel_pos_w = table(plan.table_rows[1], "rel_pos_w")

    def call(self, x):
        tables = (self.rel_pos_h, self.rel_pos_w) if self.use_rel_pos else ()
        return self.proj(self.attend(self.qkv(x), *tables))


class WindowPartition(keras.layers.Layer):
    """(B, H, W, C) -> (B * windows, ws, ws, C), the grid zero-padded bottom/right first."""

    canonical_layout = "plain"

    def __init__(self, window: int, grid: tuple[int, int], **kwargs):
        super().__init__(**kwargs)
        self.window, self.grid = window, tuple(grid)
        self.padded = padded_grid(grid, window)

    def call(self, x):
        ws, (hp, wp), c = self.window, self.padded, x.shape[-1]
        x = ops.pad(x, ((0, 0), (0, hp - self.grid[0]), (0, wp - self.grid[1]), (0, 0)))
        x = ops.transpose(ops.reshape(x, (-1, hp // ws, ws, wp // ws, ws, c)), (0, 1, 3, 2, 4, 5))
        return ops.reshape(x, (-1, ws, ws, c))


class WindowUnpartition(keras.layers.Layer):
    """The inverse of WindowPartition: windows back to the padded grid, cropped to (H, W)."""

    canonical_layout = "plain"

    def __init__(self, window: int, grid: tuple[int, int], **kwargs):
        super().__init__(**kwargs)
        self.window, self.grid = window, tuple(grid)
        self.padded = padded_grid(grid, window)

    def call(self, windows):
        ws, (hp, wp), (h, w), c = self.window, self.padded, self.grid, windows.shape[-1]
        x = ops.transpose(ops.reshape(windows, (-1, hp // ws, wp // ws, ws, ws, c)), (0, 1, 3, 2, 4, 5))
        return ops.reshape(x, (-1, hp, wp, c))[:, :h, :w, :]


def block(x, config: SamViTConfig, plan: BlockPlan):
    """Pre-norm block on the grid: windowed (or global) attention, then the MLP."""
    n = f"blocks.{plan.index}"
    y = keras.layers.LayerNormalization(epsilon=config.norm_eps, name=f"{n}.norm1")(x)
    if plan.window:
        y = WindowPartition(plan.window, config.grid, name=f"{n}.window_partition")(y)
    y = Attention(config, plan, name=f"{n}.attn")(y)
    if plan.window:
        y = WindowUnpartition(plan.window, config.grid, name=f"{n}.window_unpartition")(y)
    x = keras.layers.Add(name=f"{n}.add1")([x, y])
    y = keras.layers.LayerNormalization(epsilon=config.norm_eps, name=f"{n}.norm2")(x)
    y = _dense(config.mlp_hidden, config.embed_dim, f"{n}.mlp.fc1")(y)
    y = keras.layers.Activation("gelu", name=f"{n}.mlp.act")(y)  # Keras' gelu is exact (erf) by default
    y = _dense(config.embed_dim, config.mlp_hidden, f"{n}.mlp.fc2")(y)
    return keras.layers.Add(name=f"{n}.add2")([x, y])


class LayerNorm2d(keras.layers.LayerNormalization):
    """LayerNorm over the channels of an NHWC map: timm's LayerNorm2d (NCHW in torch)."""

    canonical_layout = "channels"


def neck_and_head(x, config: SamViTConfig):
    n, conv = config.neck_channels, init.torch_default_kernel
    x = ToImage(name="to_image")(x)
    x = keras.layers.Conv2D(n, 1, use_bias=False, kernel_initializer=conv(), name="neck.0")(x)
    x = LayerNorm2d(epsilon=config.neck_eps, name="neck.1")(x)
    x = PaddedConv2D(n, 3, explicit_padding=1, use_bias=False, kernel_initializer=conv(), name="neck.2")(x)
    x = LayerNorm2d(epsilon=config.neck_eps, name="neck.3")(x)
    x = keras.layers.GlobalAveragePooling2D(name="head.global_pool")(x)  # timm's ClassifierHead: pool, fc
    return _dense(config.num_classes, n, "head.fc")(x) if config.num_classes else x


@register_family("samvit")
class SamViT(keras.Model):
    def __init__(self, config: SamViTConfig):
        gh, gw = config.pretrain_grid
        pos_embed = keras.Variable(init.normal(TABLE_INIT_STD), shape=(1, gh, gw, config.embed_dim),
                                   dtype=keras.config.floatx(), name="pos_embed")
        inputs = keras.Input((*config.image_size, config.in_channels), name="input")
        x = patch_embed(inputs, config)
        x = PosEmbedAdd(Held(pos_embed), pos_embed_matrices(config), name="pos_add")(x)
        for plan in block_plan(config):
            x = block(x, config, plan)
        super().__init__(inputs, neck_and_head(x, config), name="samvit")
        self.pos_embed = pos_embed  # the model's own variable: canonical name "pos_embed"
