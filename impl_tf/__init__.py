"""TensorFlow/Keras 3 twin of the zoo. Imports tensorflow/keras and canon only."""

from impl_tf.registry import create_model, list_models
from impl_tf import models  # importing it registers every family's builder

__all__ = ["create_model", "list_models", "models"]
