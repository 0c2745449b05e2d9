"""TensorFlow/Keras 3 twin of the zoo. Imports tensorflow/keras and spec only."""

from impl_tf.registry import create_model, list_models

__all__ = ["create_model", "list_models"]
