"""Gradients under Keras' TensorFlow backend: a GradientTape."""

from __future__ import annotations

import tensorflow as tf


def value_and_gradients(loss, variables, state=()):
    with tf.GradientTape() as tape:
        value = loss()
    # a gather (an Embedding, SAM's relative-position tables) gives IndexedSlices: the update is
    # written for dense gradients, as torch's are
    grads = tape.gradient(value, variables)
    return value, [tf.zeros_like(v) if g is None else tf.convert_to_tensor(g) for v, g in zip(variables, grads)]


def compiled(fn):
    """Traced once per input shape: eager Keras is several times slower per step."""
    return tf.function(fn, reduce_retracing=True)
