"""One optimizer step of a spec recipe in TensorFlow/Keras.  Twin: impl_torch/training.py.

The update formulas are written out (not keras.optimizers) so that both frameworks follow the
recipe's formula term by term: eps placement, coupled L2 or decoupled weight decay,
global-norm clipping.  Everything else of a run (data order, learning-rate table, plateau
and early stopping, records) is framework-free, in repro/.  Arrays cross this interface in
torch's NCHW layout; the model sees NHWC.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from canon.training import (AECNN_JOINT_WEIGHTS, PRECISIONS, OptimizerSpec, adam_step_scalars, float_dtype,
                            shard_loss_weight, shard_rows)

DICE_SMOOTH = 1e-6
MIXED_POLICY = "mixed_bfloat16"  # Keras' policy for precision "bfloat16": float32 variables, bfloat16 compute
# Keras fixes a model's compute dtype when it is built: a bfloat16 model computes in bfloat16, which
# ONNX Conv does not take, so only float32 models are exported as built
EXPORTED_AS_BUILT = ("float32",)


def build_dtype(precision: str) -> str:
    return MIXED_POLICY if precision == "bfloat16" else float_dtype(precision)


def loss_value(kind: str, logits, target, inputs=None, label_smoothing: float = 0.0):
    """The recipe's loss (canon.training.TRAINING_LOSSES) of the model's output(s) ``logits``; ``inputs``
    are the reconstruction target of aecnn_joint."""
    if kind == "aecnn_joint":
        reconstruction, logits = logits
        bce_weight, mse_weight = AECNN_JOINT_WEIGHTS
        return bce_weight * loss_value("bce_logits", logits, target) + mse_weight * loss_value("mse", reconstruction, inputs)
    if kind == "mse":
        return tf.reduce_mean(tf.square(logits - tf.cast(target, logits.dtype)))
    if kind == "cross_entropy":
        log_p = tf.nn.log_softmax(logits, axis=1)
        classes = logits.shape[1]
        smoothed = tf.one_hot(tf.cast(target, tf.int32), classes, dtype=log_p.dtype) * (1.0 - label_smoothing) \
            + label_smoothing / classes
        return -tf.reduce_mean(tf.reduce_sum(smoothed * log_p, axis=1))
    if kind == "bce_logits":
        target = tf.cast(target, logits.dtype)
        return tf.reduce_mean(tf.maximum(logits, 0.0) - logits * target + tf.math.log1p(tf.exp(-tf.abs(logits))))
    if kind == "bce_dice":  # on probabilities; torch's BCELoss clamps the logs at -100
        p, target = logits, tf.cast(target, logits.dtype)
        bce = -tf.reduce_mean(target * tf.maximum(tf.math.log(p), -100.0)
                              + (1 - target) * tf.maximum(tf.math.log(1 - p), -100.0))
        dice = (2 * tf.reduce_sum(p * target) + DICE_SMOOTH) / (tf.reduce_sum(p) + tf.reduce_sum(target) + DICE_SMOOTH)
        return bce + 1 - dice
    raise ValueError(f"unknown loss {kind!r}")


def prediction(outputs):
    """What the metrics judge: the last output (AECNN's logits after its reconstruction)."""
    return outputs[-1] if isinstance(outputs, (tuple, list)) else outputs


def disable_dropout(net: keras.Model) -> None:
    """Trajectory parity: dropout draws from each framework's own generator, so no two masks
    agree; with rate 0 every remaining step is deterministic arithmetic on both sides."""
    for layer in _layers(net):
        if isinstance(layer, keras.layers.Dropout):
            layer.rate = 0.0


def _layers(net):
    for layer in net.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from _layers(layer)


def last_dense(net: keras.Model) -> keras.layers.Dense:
    """The classifier: the last Dense layer (its input is the pre-logit embedding)."""
    dense = [layer for layer in net.layers if isinstance(layer, keras.layers.Dense)]
    if not dense:
        raise ValueError(f"{net.name} has no Dense classifier")
    return dense[-1]


def _nhwc(x: np.ndarray) -> tf.Tensor:
    """Images, and segmentation masks, go NCHW -> NHWC; class targets pass as they are."""
    return tf.constant(np.ascontiguousarray(x.transpose(0, 2, 3, 1)) if x.ndim == 4 else x)


def _nchw(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2)) if x.ndim == 4 else x


class Trainer:
    """Adam(W) steps on ``net``.  ``head_only``: linear probing, only the classifier trains and
    the frozen network stays in inference mode (BN statistics fixed, dropout off), unless
    ``frozen_train_mode`` (the MedMNIST+ code's quirk) runs it in training mode.  ``engine``
    (impl_tf/distributed.py): each replica trains its shard of every batch under its strategy."""

    def __init__(self, net: keras.Model, optimizer: OptimizerSpec, loss: str, label_smoothing: float = 0.0,
                 head_only: bool = False, precision: str = "float32", dropout: bool = True,
                 frozen_train_mode: bool = False, engine=None):
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        compute = {"bfloat16": "bfloat16", "float64": "float64"}.get(precision, "float32")
        if net.compute_dtype != compute:  # Keras fixes the compute dtype when the model is built
            raise ValueError(f"precision {precision!r} needs a model built under the {compute!r} compute dtype, "
                             f"got {net.compute_dtype!r}")
        self.net, self.spec, self.loss, self.label_smoothing = net, optimizer, loss, label_smoothing
        self.head_only, self.precision, self.dtype = head_only, precision, tf.as_dtype(float_dtype(precision))
        self.training_mode = not head_only or frozen_train_mode
        if not dropout:
            disable_dropout(net)
        head = {id(v) for v in last_dense(net).trainable_variables} if head_only else set()
        self.params = [v for v in net.trainable_variables if not head_only or id(v) in head]
        self.m = [tf.Variable(tf.zeros_like(v), trainable=False) for v in self.params]
        self.v = [tf.Variable(tf.zeros_like(v), trainable=False) for v in self.params]
        self.step_count = 0
        self.engine = engine if engine is not None and engine.size > 1 else None
        self._state_stale = False
        if self.engine is not None:  # rank 0's starting weights everywhere, as DDP does when it wraps a model
            self.engine.sync_state(list(net.variables))
            for layer in _layers(net):  # --sync-batchnorm: the whole batch's statistics, as SyncBatchNorm
                if isinstance(layer, keras.layers.BatchNormalization):
                    layer.synchronized = self.engine.sync_batchnorm
        # traced once per input shape: eager Keras is several times slower per step
        self._gradients = tf.function(self._loss_and_gradients, reduce_retracing=True)
        self._update = tf.function(self._apply_adam, reduce_retracing=True)
        self._replicated_gradients = tf.function(
            lambda x, y, weight, share: self.engine.run(self._shard_loss_and_gradients, (x, y, weight, share)),
            reduce_retracing=True)

    def _forward(self, x, training: bool):
        """The model's output(s) in the loss dtype (float32 under mixed bfloat16)."""
        outputs = self.net(x, training=training)
        return [tf.cast(o, self.dtype) for o in outputs] if isinstance(outputs, (tuple, list)) \
            else tf.cast(outputs, self.dtype)

    def _batch(self, x: np.ndarray) -> tf.Tensor:
        """A batch array as NHWC; floating data in the loss dtype (the model casts its input)."""
        tensor = _nhwc(x)
        return tf.cast(tensor, self.dtype) if tensor.dtype.is_floating else tensor

    def _loss_and_gradients(self, x, y):
        with tf.GradientTape() as tape:
            value = loss_value(self.loss, self._forward(x, self.training_mode), y, x, self.label_smoothing)
            if self.net.losses:
                value = value + tf.add_n(self.net.losses)
        # a gather (an Embedding, SAM's relative-position tables) gives IndexedSlices: the update
        # is written for dense gradients, as torch's are
        return value, [tf.convert_to_tensor(g) for g in tape.gradient(value, self.params)]

    def _shard_loss_and_gradients(self, x, y, weight, share):
        """On one replica: its shard's loss weighted so that the average over the replicas is the
        whole batch's gradient (canon.training.shard_loss_weight), averaged by the strategy's
        all-reduce; the whole batch's loss is the sum of the shares."""
        context = tf.distribute.get_replica_context()
        with tf.GradientTape() as tape:
            data = loss_value(self.loss, self._forward(x, self.training_mode), y, x, self.label_smoothing)
            penalty = tf.add_n(self.net.losses) if self.net.losses else tf.zeros((), data.dtype)
            value = data * weight + penalty
        grads = [tf.convert_to_tensor(g) for g in tape.gradient(value, self.params)]
        grads = context.all_reduce(tf.distribute.ReduceOp.MEAN, grads)
        return context.all_reduce(tf.distribute.ReduceOp.SUM, data * share) + penalty, grads

    def _shards(self, x: np.ndarray, y: np.ndarray):
        """This process's replicas' shards of the global batch, their loss weights and shares."""
        engine, batch = self.engine, len(x)

        def shard(replica):
            rows = shard_rows(batch, engine.size, replica)
            return (self._batch(x[rows]), self._batch(y[rows]),
                    tf.constant(shard_loss_weight(batch, engine.size, replica), self.dtype),
                    tf.constant((rows.stop - rows.start) / batch, self.dtype))

        return engine.per_replica(shard)

    def train_step(self, x: np.ndarray, y: np.ndarray, lr: float, clip_norm: float | None = None) -> float:
        """One step on the global batch ``x, y`` (under a strategy: each replica's shard of it)."""
        if self.engine is not None:
            value, grads = self.engine.local(self._replicated_gradients(*self._shards(x, y)))  # all hold the same
            self._state_stale = True
        else:
            value, grads = self._gradients(self._batch(x), self._batch(y))
        if clip_norm is not None:
            grads = clip_by_global_norm(grads, clip_norm)
        self._adam(grads, lr)
        return float(value)

    def _adam(self, grads, lr: float) -> None:
        """Scalars from spec (float64, the same for both twins); the update traced."""
        self.step_count += 1
        scalars = adam_step_scalars(self.spec, self.step_count, lr)
        self._update(list(grads), *(tf.constant(v, self.params[0].dtype) for v in scalars))

    def _apply_adam(self, grads, step_size, root_correction, decay):
        s = self.spec
        b1, b2 = s.betas
        for p, g, m, v in zip(self.params, grads, self.m, self.v):
            if s.weight_decay and not s.decoupled:
                g = g + s.weight_decay * p  # coupled L2, torch Adam(weight_decay)
            m.assign(m * b1 + g * (1.0 - b1))
            v.assign(v * b2 + g * g * (1.0 - b2))
            if s.weight_decay and s.decoupled:
                p.assign(p * decay)
            if s.eps_placement == "v":
                p.assign_sub(step_size * m / (tf.sqrt(v) + s.eps))
            else:
                p.assign_sub(step_size * m / (tf.sqrt(v) / root_correction + s.eps))

    def _sync(self) -> None:
        """Under a strategy, replica 0's BatchNorm statistics on every replica once training steps
        changed them: every process then evaluates (and decides to stop) alike."""
        if self._state_stale:
            self.engine.sync_state([v for v in self.net.non_trainable_variables
                                    if "float" in str(v.dtype) and "seed_generator" not in v.path])
            self._state_stale = False

    def evaluate(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, float]:
        """The prediction (inference mode) and the batch's loss without penalties."""
        self._sync()
        inputs = self._batch(x)
        outputs = self._forward(inputs, False)
        loss = loss_value(self.loss, outputs, self._batch(y), inputs, self.label_smoothing)
        return _nchw(np.asarray(prediction(outputs))), float(loss)

    def embed(self, x: np.ndarray) -> np.ndarray:
        """Pre-logit embedding: the input of the classifier, caught as the model runs (a
        subclassed model has no graph to cut at the classifier; torch's twin uses a hook)."""
        self._sync()
        head, seen = last_dense(self.net), []
        call = head.call
        head.call = lambda inputs, *args, **kwargs: (seen.append(inputs), call(inputs, *args, **kwargs))[1]
        try:
            self.net(self._batch(x), training=False)
        finally:
            del head.call
        return np.asarray(tf.cast(seen[-1], self.dtype))

    # -- resume state: optimizer moments, step count and the RNG ------------------------
    def optimizer_state(self) -> dict[str, np.ndarray]:
        """Keras' seed states advance alike on every replica: one copy is every replica's."""
        self._sync()
        state = {f"m.{i}": m.numpy().copy() for i, m in enumerate(self.m)}
        state.update({f"v.{i}": v.numpy().copy() for i, v in enumerate(self.v)})
        state["step_count"] = np.asarray(self.step_count, np.int64)
        # Keras' dropout draws from seed-generator state variables: part of the RNG state
        state.update({f"seed.{i}": np.asarray(v.numpy()) for i, v in enumerate(_seed_states(self.net))})
        return state

    def load_optimizer_state(self, state: dict[str, np.ndarray]) -> None:
        for i, (m, v) in enumerate(zip(self.m, self.v)):
            m.assign(state[f"m.{i}"])
            v.assign(state[f"v.{i}"])
        self.step_count = int(state["step_count"])
        for i, variable in enumerate(_seed_states(self.net)):
            variable.assign(state[f"seed.{i}"])


def _seed_states(net: keras.Model) -> list:
    return [v for v in net.variables if "seed_generator" in v.path]


def clip_by_global_norm(grads, max_norm: float):
    """torch's clip_grad_norm_: scale by max_norm / (norm + 1e-6) when that is below 1."""
    norm = tf.sqrt(tf.add_n([tf.reduce_sum(tf.cast(g, tf.float64) ** 2) for g in grads]))
    scale = min(1.0, max_norm / (float(norm) + 1e-6))
    return [g * scale for g in grads] if scale < 1.0 else list(grads)


def builtin_adamw_step(net: keras.Model, lr: float, weight_decay: float, eps: float, label_smoothing: float):
    """A minimal hand-written loop's step with Keras' own AdamW: the benchmark's baseline."""
    optimizer = keras.optimizers.AdamW(lr, weight_decay=weight_decay, epsilon=eps)
    loss_fn = keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=label_smoothing)

    @tf.function(reduce_retracing=True)
    def train(x, y):
        with tf.GradientTape() as tape:
            logits = net(x, training=True)
            loss = loss_fn(tf.one_hot(y, logits.shape[-1]), logits)
            if net.losses:
                loss = loss + tf.add_n(net.losses)
        optimizer.apply_gradients(zip(tape.gradient(loss, net.trainable_variables), net.trainable_variables))

    return lambda x, y: train(_nhwc(x), tf.constant(y))
