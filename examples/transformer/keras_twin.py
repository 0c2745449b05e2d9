"""The same encoder with stock Keras layers (Embedding, LayerNormalization, MultiHeadAttention,
Dense with exact GELU), named as the torch modules.  The position embedding is a small layer
holding one variable, torch's free nn.Parameter."""

import keras
from keras import layers


class PositionEmbedding(layers.Layer):
    canonical_layout = "plain"  # (batch, tokens, width) in both frameworks

    def __init__(self, tokens: int, width: int, **kwargs):
        super().__init__(**kwargs)
        self.pos_embed = self.add_weight(shape=(1, tokens, width), initializer="zeros", name="pos_embed")

    def call(self, x):
        return x + self.pos_embed


def create(name: str = "encoder", vocabulary: int = 40, tokens: int = 7, width: int = 16, heads: int = 2,
           num_classes: int = 3) -> keras.Model:
    ids = keras.Input((tokens,), dtype="int64")
    x = layers.Embedding(vocabulary, width, name="embed")(ids)
    x = PositionEmbedding(tokens, width, name="pos")(x)
    y = layers.LayerNormalization(epsilon=1e-5, name="block.norm1")(x)  # torch's LayerNorm eps
    x = layers.Add(name="block.add1")([x, layers.MultiHeadAttention(heads, width // heads, name="block.attn")(y, y)])
    y = layers.LayerNormalization(epsilon=1e-5, name="block.norm2")(x)
    y = layers.Dense(2 * width, name="block.fc1")(y)
    y = layers.Activation(lambda t: keras.activations.gelu(t, approximate=False), name="block.act")(y)
    x = layers.Add(name="block.add2")([x, layers.Dense(width, name="block.fc2")(y)])
    x = layers.LayerNormalization(epsilon=1e-5, name="norm")(x)
    x = layers.GlobalAveragePooling1D(name="pool")(x)
    return keras.Model(ids, layers.Dense(num_classes, name="head")(x), name=name)
