"""Keras twin of torch_pitfalls, faithful by default; ``naive=`` builds it the way a hurried
port would, so that the tests can show each pitfall being caught at the right layer."""

import keras

from impl_tf.layers import BatchNorm, PaddedConv2D, PaddedMaxPool2D

NAIVE = (None, "conv_same", "pool_zero_pad", "bn_defaults", "spare_layer")


def create(name: str, in_channels: int = 3, num_classes: int = 6, naive: str | None = None) -> keras.Model:
    if naive not in NAIVE:
        raise ValueError(f"naive must be one of {NAIVE}, got {naive!r}")
    inputs = keras.Input((None, None, in_channels))
    if naive == "conv_same":  # TF 'same' pads 0 before, 1 after at stride 2
        x = keras.layers.Conv2D(8, 3, strides=2, padding="same", name="conv1")(inputs)
    else:
        x = PaddedConv2D(8, 3, strides=2, explicit_padding=1, name="conv1")(inputs)
    if naive == "pool_zero_pad":  # zero padding differs from -inf before a ReLU
        x = keras.layers.ZeroPadding2D(1, name="maxpool.pad")(x)
        x = keras.layers.MaxPooling2D(3, strides=2, name="maxpool")(x)
    else:
        x = PaddedMaxPool2D(3, strides=2, explicit_padding=1, name="maxpool")(x)
    if naive == "bn_defaults":  # Keras epsilon 1e-3 and momentum 0.99
        x = keras.layers.BatchNormalization(name="bn")(x)
    else:
        x = BatchNorm(momentum=0.9, epsilon=1e-5, name="bn")(x)
    x = PaddedConv2D(12, 3, explicit_padding=1, use_bias=False, name="conv2")(x)
    x = keras.layers.ReLU(name="relu")(x)
    if naive == "spare_layer":  # a weightless layer torch does not have: only the contract can tell
        x = keras.layers.Activation("linear", name="spare")(x)
    x = keras.layers.GlobalAveragePooling2D(keepdims=True, name="avgpool")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    return keras.Model(inputs, keras.layers.Dense(num_classes, name="fc")(x))
