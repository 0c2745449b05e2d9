"""Gradients on the Keras backend this process runs (``KERAS_BACKEND``): the one thing of a
training step that Keras 3 leaves to each backend.  One small module per backend, imported only
under that backend, each with the same two functions:

- ``value_and_gradients(loss, variables, state)``: ``loss()`` computes a scalar from the
  variables' current values; returns it and the dense gradient of each variable (a variable the
  loss does not reach gets zeros).  What the pass assigns to ``state`` (BatchNorm moving
  statistics) is assigned as by an ordinary call.
- ``compiled(fn)``: ``fn`` traced once per input signature where the backend gains by it
  (TensorFlow's graphs); as it is elsewhere.

The torch backend's module is the only place of impl_tf that imports torch, and it is loaded only
in a process whose Keras runs on torch: such a process never holds TensorFlow.
"""

from __future__ import annotations

import importlib

import keras

MODULES = {"tensorflow": "impl_tf.autodiff.tensorflow", "jax": "impl_tf.autodiff.jax",
           "torch": "impl_tf.autodiff.torch"}


def backend():
    """This process's backend module."""
    name = keras.backend.backend()
    if name not in MODULES:
        raise RuntimeError(f"Keras backend {name!r} has no gradient module; twinframe trains on "
                           f"{', '.join(MODULES)} (set KERAS_BACKEND)")
    return importlib.import_module(MODULES[name])
