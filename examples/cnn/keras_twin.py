"""The same CNN with stock Keras layers, each named as its torch module.

BatchNormalization is given torch's epsilon (1e-5) and momentum (0.1 in torch = 0.9 in Keras).
One difference stays: Keras updates the moving variance with the biased batch variance, torch
with the unbiased one; the check names it (``bn_running_variance_biased``) and the pair
accepts it as a known difference (docs/byo.md).
"""

import keras
from keras import layers


def create(name: str = "cnn", in_channels: int = 3, num_classes: int = 5) -> keras.Model:
    inputs = keras.Input((None, None, in_channels))
    x = layers.Conv2D(8, 3, padding="same", name="conv1")(inputs)
    x = layers.BatchNormalization(epsilon=1e-5, momentum=0.9, name="bn1")(x)
    x = layers.ReLU(name="relu1")(x)
    x = layers.MaxPooling2D(2, name="pool1")(x)
    x = layers.Conv2D(16, 3, padding="same", name="conv2")(x)
    x = layers.BatchNormalization(epsilon=1e-5, momentum=0.9, name="bn2")(x)
    x = layers.ReLU(name="relu2")(x)
    x = layers.GlobalAveragePooling2D(keepdims=True, name="pool2")(x)  # (N, 1, 1, C), as AdaptiveAvgPool2d(1)
    x = layers.Flatten(name="flatten")(x)
    return keras.Model(inputs, layers.Dense(num_classes, name="fc")(x), name=name)
