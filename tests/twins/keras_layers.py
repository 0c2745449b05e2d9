"""One stock Keras layer per model, named ``layer``: the candidate side of torch_layers."""

from __future__ import annotations

import keras
from keras import layers

from parity.mappings import register_keras_layer, same


class Scale(layers.Layer):
    """A user's own layer (torch_layers.Scale), mapped by the public registry below."""

    def build(self, input_shape):
        self.factor = self.add_weight(shape=(input_shape[-1],), initializer="ones", name="factor")

    def call(self, x):
        return x * self.factor


# Keras' variable "factor" is torch's "weight"; the output keeps its input's layout
register_keras_layer(Scale, weights=lambda layer: [same("weight", "factor")], layout="same_as_input")

# kind -> (the layer, the Keras input shape without the batch, the input dtype)
LAYERS = {
    "conv1d": (lambda name: layers.Conv1D(6, 3, padding="same", groups=2, name=name), (11, 4)),
    "conv2d": (lambda name: layers.Conv2D(6, 3, padding="same", groups=2, name=name), (7, 9, 4)),
    "conv3d": (lambda name: layers.Conv3D(4, 3, padding="same", name=name), (5, 6, 7, 3)),
    "conv1d_transpose": (lambda name: layers.Conv1DTranspose(3, 3, strides=2, name=name), (11, 4)),
    "conv2d_transpose": (lambda name: layers.Conv2DTranspose(3, 3, strides=2, name=name), (7, 9, 4)),
    "conv3d_transpose": (lambda name: layers.Conv3DTranspose(2, 3, strides=2, name=name), (5, 6, 7, 3)),
    "depthwise1d": (lambda name: layers.DepthwiseConv1D(3, depth_multiplier=2, padding="same", name=name), (11, 4)),
    "depthwise2d": (lambda name: layers.DepthwiseConv2D(3, depth_multiplier=2, padding="same", name=name), (7, 9, 4)),
    "separable1d": (lambda name: layers.SeparableConv1D(5, 3, depth_multiplier=2, padding="same", name=name), (11, 4)),
    "separable2d": (lambda name: layers.SeparableConv2D(5, 3, depth_multiplier=2, padding="same", name=name), (7, 9, 4)),
    "dense_nd": (lambda name: layers.Dense(5, name=name), (3, 4, 6)),
    "batchnorm1d": (lambda name: layers.BatchNormalization(epsilon=1e-5, momentum=0.9, name=name), (9, 4)),
    "batchnorm2d": (lambda name: layers.BatchNormalization(epsilon=1e-5, momentum=0.9, name=name), (7, 9, 4)),
    "batchnorm3d": (lambda name: layers.BatchNormalization(epsilon=1e-5, momentum=0.9, name=name), (5, 6, 7, 3)),
    "layernorm": (lambda name: layers.LayerNormalization(epsilon=1e-5, name=name), (5, 6)),
    "groupnorm": (lambda name: layers.GroupNormalization(2, epsilon=1e-5, name=name), (7, 9, 4)),
    "rmsnorm": (lambda name: layers.RMSNormalization(epsilon=1e-6, name=name), (5, 6)),
    "embedding": (lambda name: layers.Embedding(11, 6, name=name), (7,)),
    "lstm": (lambda name: layers.LSTM(4, return_sequences=True, name=name), (6, 5)),
    "gru": (lambda name: layers.GRU(4, return_sequences=True, name=name), (6, 5)),
    "simple_rnn": (lambda name: layers.SimpleRNN(4, return_sequences=True, name=name), (6, 5)),
    "bidirectional": (lambda name: layers.Bidirectional(layers.LSTM(4, return_sequences=True), name=name), (6, 5)),
    "prelu": (lambda name: layers.PReLU(shared_axes=[1, 2], name=name), (7, 9, 4)),
    "user_scale": (lambda name: Scale(name=name), (7, 9, 4)),
}
INTEGER_INPUTS = {"embedding"}


class Tokens(layers.Layer):
    """torch_layers.Tokens: a class token and a position embedding, as free variables."""

    canonical_layout = "plain"  # (batch, tokens, width) in both

    def __init__(self, width: int = 6, tokens: int = 4, **kwargs):
        super().__init__(**kwargs)
        self.cls_token = self.add_weight(shape=(1, 1, width), initializer="zeros", name="cls_token")
        self.pos_embed = self.add_weight(shape=(1, tokens + 1, width), initializer="zeros", name="pos_embed")

    def call(self, x):
        batch = keras.ops.shape(x)[0]
        cls = keras.ops.broadcast_to(self.cls_token, (batch, 1, keras.ops.shape(x)[-1]))
        return keras.ops.concatenate([cls, x], axis=1) + self.pos_embed


class FirstChannels(layers.Layer):
    """A layer of a user's own that changes its input's shape and declares no layout."""

    def call(self, x):
        return x[..., :2]


def create(name: str, **config) -> keras.Model:
    if name == "two_outputs":
        inputs = keras.Input((7, 9, 4))
        y = layers.Conv2D(3, 3, padding="same", name="layer")(inputs)
        total = layers.Lambda(lambda t: keras.ops.sum(t, axis=-1), name="total")
        total.canonical_layout = "plain"  # (batch, H, W) in both
        return keras.Model(inputs, [y, total(y)])
    if name == "undeclared_layout":
        inputs = keras.Input((7, 9, 4))
        return keras.Model(inputs, FirstChannels(name="layer")(inputs))
    if name == "attention":
        inputs = keras.Input((5, 8))
        return keras.Model(inputs, layers.MultiHeadAttention(2, 4, name="layer")(inputs, inputs))
    if name == "free_variables":
        inputs = keras.Input((4, 6))
        return keras.Model(inputs, Tokens(name="layer")(inputs))
    make, shape = LAYERS[name]
    inputs = keras.Input(shape, dtype="int64" if name in INTEGER_INPUTS else None)
    return keras.Model(inputs, make("layer")(inputs))
