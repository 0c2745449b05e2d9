"""The same model as subclassed Keras: a Layer subclass for the block, a Model subclass holding a
list of them.  Layers are named by the attributes that hold them (``blocks.0.conv``), as torch's."""

import keras
from keras import layers


class ConvBlock(layers.Layer):
    def __init__(self, c_out: int, **kwargs):
        super().__init__(**kwargs)
        self.conv = layers.Conv2D(c_out, 3, padding="same")
        self.norm = layers.GroupNormalization(2, epsilon=1e-5)
        self.act = layers.Activation("silu")

    def call(self, x):
        return self.act(self.norm(self.conv(x)))


class Net(keras.Model):
    def __init__(self, num_classes: int = 4, **kwargs):
        super().__init__(**kwargs)
        self.blocks = [ConvBlock(8), ConvBlock(8)]
        self.pool = layers.GlobalAveragePooling2D(keepdims=True)  # (N, 1, 1, C), as AdaptiveAvgPool2d(1)
        self.flatten = layers.Flatten()
        self.head = layers.Dense(num_classes)

    def call(self, x):
        for block in self.blocks:
            x = block(x)
        return self.head(self.flatten(self.pool(x)))


def create(name: str = "subclassed", in_channels: int = 3, num_classes: int = 4) -> keras.Model:
    return Net(num_classes, name=name)  # built on the first call: the check gives it its input shape
