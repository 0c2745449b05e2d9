"""The Keras trainer's step on the TensorFlow backend: GradientTape, traced by tf.function (eager
Keras is several times slower per step), alone or under a strategy (impl_tf/distributed.py).
Imported by impl_tf/training.py only when Keras runs on TensorFlow.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from canon.training import shard_loss_weight, shard_rows
from impl_tf.training import nhwc, penalty


def compiled(function):
    """``function`` traced once per input signature."""
    return tf.function(function, reduce_retracing=True)


def _dense(grads) -> list:
    # a gather (an Embedding, SAM's relative-position tables) gives IndexedSlices: the update
    # is written for dense gradients, as torch's are
    return [tf.convert_to_tensor(g) for g in grads]


def gradients(trainer):
    """``(x, y) -> (loss, gradients)`` of the global batch: on one replica, or each replica on
    its shard under the trainer's engine, averaged by the strategy's all-reduce."""
    if trainer.engine is not None:
        return _replicated_gradients(trainer)

    @compiled
    def whole_batch(x, y):
        with tf.GradientTape() as tape:
            value = trainer.loss_of(x, y)
        return value, _dense(tape.gradient(value, trainer.params))

    return lambda x, y: whole_batch(trainer.batch(x), trainer.batch(y))


def _replicated_gradients(trainer):
    engine = trainer.engine

    def on_replica(x, y, weight, share):
        """Its shard's loss weighted so that the average over the replicas is the whole batch's
        gradient (canon.training.shard_loss_weight); the whole batch's loss is the sum of the shares."""
        context = tf.distribute.get_replica_context()
        with tf.GradientTape() as tape:
            data = trainer.data_loss(x, y)
            weights_penalty = penalty(trainer.net)
            value = data * weight + weights_penalty
        grads = context.all_reduce(tf.distribute.ReduceOp.MEAN, _dense(tape.gradient(value, trainer.params)))
        return context.all_reduce(tf.distribute.ReduceOp.SUM, data * share) + weights_penalty, grads

    replicated = compiled(lambda *shards: engine.run(on_replica, shards))

    def shards(x: np.ndarray, y: np.ndarray):
        """This process's replicas' shards of the global batch, their loss weights and shares."""
        batch = len(x)

        def shard(replica):
            rows = shard_rows(batch, engine.size, replica)
            return (trainer.batch(x[rows]), trainer.batch(y[rows]),
                    tf.constant(shard_loss_weight(batch, engine.size, replica), trainer.dtype),
                    tf.constant((rows.stop - rows.start) / batch, trainer.dtype))

        return engine.per_replica(shard)

    return lambda x, y: engine.local(replicated(*shards(x, y)))  # every replica holds the same


def builtin_adamw_step(net: keras.Model, lr: float, weight_decay: float, eps: float, label_smoothing: float):
    """A minimal hand-written loop's step with Keras' own AdamW: the benchmark's baseline."""
    optimizer = keras.optimizers.AdamW(lr, weight_decay=weight_decay, epsilon=eps)
    loss_fn = keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=label_smoothing)

    @compiled
    def train(x, y):
        with tf.GradientTape() as tape:
            logits = net(x, training=True)
            loss = loss_fn(tf.one_hot(y, logits.shape[-1]), logits)
            if net.losses:
                loss = loss + tf.add_n(net.losses)
        optimizer.apply_gradients(zip(tape.gradient(loss, net.trainable_variables), net.trainable_variables))

    return lambda x, y: train(tf.constant(nhwc(x)), tf.constant(y))
