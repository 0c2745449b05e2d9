"""One optimizer step of a spec recipe in Keras 3, on any of its backends.  Twin: impl_torch/training.py.

The update formulas are written out (not keras.optimizers) so that both frameworks follow the
recipe's formula term by term: eps placement, coupled L2 or decoupled weight decay,
global-norm clipping.  Everything else of a run (data order, learning-rate table, plateau
and early stopping, records) is framework-free, in repro/.  Arrays cross this interface in
torch's NCHW layout; the model sees NHWC.

Everything here is keras.ops but the gradient: on TensorFlow the trainer traces its step with
GradientTape under tf.function (impl_tf/tf_steps.py, also the strategies' replicated step); on
another backend it is handed that backend's ``differentiate`` (the parity adapter's hook, the
same one its gradient check uses), since this package imports no framework but TensorFlow.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from canon.training import AECNN_JOINT_WEIGHTS, PRECISIONS, OptimizerSpec, adam_step_scalars, float_dtype

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
        return ops.mean(ops.square(logits - ops.cast(target, logits.dtype)))
    if kind == "cross_entropy":
        log_p = ops.log_softmax(logits, axis=1)
        classes = logits.shape[1]
        smoothed = ops.one_hot(ops.cast(target, "int32"), classes, dtype=log_p.dtype) * (1.0 - label_smoothing) \
            + label_smoothing / classes
        return -ops.mean(ops.sum(smoothed * log_p, axis=1))
    if kind == "bce_logits":
        target = ops.cast(target, logits.dtype)
        return ops.mean(ops.maximum(logits, 0.0) - logits * target + ops.log1p(ops.exp(-ops.abs(logits))))
    if kind == "bce_dice":  # on probabilities; torch's BCELoss clamps the logs at -100
        p, target = logits, ops.cast(target, logits.dtype)
        bce = -ops.mean(target * ops.maximum(ops.log(p), -100.0) + (1 - target) * ops.maximum(ops.log(1 - p), -100.0))
        dice = (2 * ops.sum(p * target) + DICE_SMOOTH) / (ops.sum(p) + ops.sum(target) + DICE_SMOOTH)
        return bce + 1 - dice
    raise ValueError(f"unknown loss {kind!r}")


def penalty(net: keras.Model):
    """The model's weight penalties (L2 kernel regularizers), 0.0 when it has none."""
    return ops.sum(ops.stack(net.losses)) if net.losses else 0.0


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


def nhwc(x: np.ndarray) -> np.ndarray:
    """Images, and segmentation masks, go NCHW -> NHWC; class targets pass as they are."""
    return np.ascontiguousarray(x.transpose(0, 2, 3, 1)) if x.ndim == 4 else x


def _nchw(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2)) if x.ndim == 4 else x


class Trainer:
    """Adam(W) steps on ``net``.  ``head_only``: linear probing, only the classifier trains and
    the frozen network stays in inference mode (BN statistics fixed, dropout off), unless
    ``frozen_train_mode`` (the MedMNIST+ code's quirk) runs it in training mode.  ``engine``
    (impl_tf/distributed.py, TensorFlow only): each replica trains its shard of every batch under
    its strategy.  ``differentiate(loss_of, variables, inputs, state)``: the backend's gradient,
    needed on every backend but TensorFlow (module docstring)."""

    def __init__(self, net: keras.Model, optimizer: OptimizerSpec, loss: str, label_smoothing: float = 0.0,
                 head_only: bool = False, precision: str = "float32", dropout: bool = True,
                 frozen_train_mode: bool = False, engine=None, differentiate=None):
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        compute = {"bfloat16": "bfloat16", "float64": "float64"}.get(precision, "float32")
        if net.compute_dtype != compute:  # Keras fixes the compute dtype when the model is built
            raise ValueError(f"precision {precision!r} needs a model built under the {compute!r} compute dtype, "
                             f"got {net.compute_dtype!r}")
        self.net, self.spec, self.loss, self.label_smoothing = net, optimizer, loss, label_smoothing
        self.head_only, self.precision, self.dtype = head_only, precision, float_dtype(precision)
        self.training_mode = not head_only or frozen_train_mode
        if not dropout:
            disable_dropout(net)
        head = {id(v) for v in last_dense(net).trainable_variables} if head_only else set()
        self.params = [v for v in net.trainable_variables if not head_only or id(v) in head]
        self.m = [keras.Variable(ops.zeros(v.shape, v.dtype), dtype=v.dtype, trainable=False) for v in self.params]
        self.v = [keras.Variable(ops.zeros(v.shape, v.dtype), dtype=v.dtype, trainable=False) for v in self.params]
        self.step_count = 0
        self.engine = engine if engine is not None and engine.size > 1 else None
        self._state_stale = False
        if self.engine is not None:  # rank 0's starting weights everywhere, as DDP does when it wraps a model
            self.engine.sync_state(list(net.variables))
            for layer in _layers(net):  # --sync-batchnorm: the whole batch's statistics, as SyncBatchNorm
                if isinstance(layer, keras.layers.BatchNormalization):
                    layer.synchronized = self.engine.sync_batchnorm
        if keras.backend.backend() == "tensorflow":
            from impl_tf import tf_steps  # TensorFlow's graphs and strategies, only on its backend

            self._gradients, self._update = tf_steps.gradients(self), tf_steps.compiled(self._apply_adam)
        elif engine is not None:
            raise ValueError(f"data-parallel training of the Keras twin runs on TensorFlow only, "
                             f"not on {keras.backend.backend()!r}")
        elif differentiate is None:
            raise ValueError(f"Keras on {keras.backend.backend()!r}: the trainer needs the backend's differentiate "
                             f"(the parity adapter's, as repro/backends.py hands it)")
        else:
            state = list(net.non_trainable_variables)  # what a training pass assigns (BN statistics, seeds)
            self._gradients = lambda x, y: differentiate(
                lambda _inputs: self.loss_of(self.batch(x), self.batch(y)), self.params, [], state)[:2]
            self._update = self._apply_adam

    def forward(self, x, training: bool):
        """The model's output(s) in the loss dtype (float32 under mixed bfloat16)."""
        outputs = self.net(x, training=training)
        return [ops.cast(o, self.dtype) for o in outputs] if isinstance(outputs, (tuple, list)) \
            else ops.cast(outputs, self.dtype)

    def batch(self, x: np.ndarray):
        """A batch array as an NHWC tensor; floating data in the loss dtype (the model casts its input)."""
        array = nhwc(x)
        return ops.convert_to_tensor(array, self.dtype if np.issubdtype(array.dtype, np.floating) else None)

    def data_loss(self, x, y):
        return loss_value(self.loss, self.forward(x, self.training_mode), y, x, self.label_smoothing)

    def loss_of(self, x, y):
        return self.data_loss(x, y) + penalty(self.net)

    def train_step(self, x: np.ndarray, y: np.ndarray, lr: float, clip_norm: float | None = None) -> float:
        """One step on the global batch ``x, y`` (under a strategy: each replica's shard of it)."""
        value, grads = self._gradients(x, y)
        self._state_stale = self.engine is not None
        if clip_norm is not None:
            grads = clip_by_global_norm(grads, clip_norm)
        self._adam(grads, lr)
        return float(value)

    def _adam(self, grads, lr: float) -> None:
        """Scalars from spec (float64, the same for both twins); the update in the weights' dtype."""
        self.step_count += 1
        scalars = adam_step_scalars(self.spec, self.step_count, lr)
        self._update(list(grads), *(ops.convert_to_tensor(v, self.params[0].dtype) for v in scalars))

    def _apply_adam(self, grads, step_size, root_correction, decay):
        s = self.spec
        b1, b2 = s.betas
        for p, g, m, v in zip(self.params, grads, self.m, self.v):
            if s.weight_decay and not s.decoupled:
                g = g + s.weight_decay * p.value  # coupled L2, torch Adam(weight_decay)
            m.assign(m.value * b1 + g * (1.0 - b1))
            v.assign(v.value * b2 + g * g * (1.0 - b2))
            if s.weight_decay and s.decoupled:
                p.assign(p.value * decay)
            if s.eps_placement == "v":
                p.assign(p.value - step_size * m.value / (ops.sqrt(v.value) + s.eps))
            else:
                p.assign(p.value - step_size * m.value / (ops.sqrt(v.value) / root_correction + s.eps))

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
        inputs = self.batch(x)
        outputs = self.forward(inputs, False)
        loss = loss_value(self.loss, outputs, self.batch(y), inputs, self.label_smoothing)
        return _nchw(ops.convert_to_numpy(prediction(outputs))), float(loss)

    def embed(self, x: np.ndarray) -> np.ndarray:
        """Pre-logit embedding: the input of the classifier, caught as the model runs (a
        subclassed model has no graph to cut at the classifier; torch's twin uses a hook)."""
        self._sync()
        head, seen = last_dense(self.net), []
        call = head.call
        head.call = lambda inputs, *args, **kwargs: (seen.append(inputs), call(inputs, *args, **kwargs))[1]
        try:
            self.net(self.batch(x), training=False)
        finally:
            del head.call
        return ops.convert_to_numpy(ops.cast(seen[-1], self.dtype))

    # -- resume state: optimizer moments, step count and the RNG ------------------------
    def optimizer_state(self) -> dict[str, np.ndarray]:
        """Keras' seed states advance alike on every replica: one copy is every replica's."""
        self._sync()
        state = {f"m.{i}": ops.convert_to_numpy(m).copy() for i, m in enumerate(self.m)}
        state.update({f"v.{i}": ops.convert_to_numpy(v).copy() for i, v in enumerate(self.v)})
        state["step_count"] = np.asarray(self.step_count, np.int64)
        # Keras' dropout draws from seed-generator state variables: part of the RNG state
        state.update({f"seed.{i}": ops.convert_to_numpy(v) for i, v in enumerate(_seed_states(self.net))})
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
    norm = ops.sqrt(sum(ops.sum(ops.square(ops.cast(g, "float64"))) for g in grads))
    scale = min(1.0, max_norm / (float(norm) + 1e-6))
    return [g * scale for g in grads] if scale < 1.0 else list(grads)


def builtin_adamw_step(net: keras.Model, lr: float, weight_decay: float, eps: float, label_smoothing: float):
    """A minimal hand-written loop's step with Keras' own AdamW: the benchmark's baseline
    (TensorFlow backend)."""
    from impl_tf import tf_steps

    return tf_steps.builtin_adamw_step(net, lr, weight_decay, eps, label_smoothing)
