"""The same MLP as a keras.Sequential without an Input (built on its first call), its layers
named 0, 1, 2 as torch's."""

import keras
from keras import layers


def create(name: str = "mlp", features: int = 6, hidden: int = 10, num_classes: int = 3) -> keras.Model:
    return keras.Sequential([layers.Dense(hidden, name="0"), layers.Activation("tanh", name="1"),
                             layers.Dense(num_classes, name="2")], name=name)
