"""The training contract both twins follow: the optimizer's update, the precisions and their
dtype, the loss vocabulary.  Both trainers (``impl_torch/training.py``, ``impl_tf/training.py``)
implement exactly these; the recipes that choose among them are ``repro/recipes.py``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class OptimizerSpec:
    """Adam family.  ``eps_placement``: "v_hat" adds eps to the bias-corrected sqrt(v_hat) (as torch's
    Adam does), "v" to the uncorrected sqrt(v), the correction folded into the step size (as Keras').
    ``decoupled``: AdamW (p -= lr * wd * p) instead of L2 added to the gradient."""

    lr: float
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    eps_placement: str = "v_hat"
    weight_decay: float = 0.0
    decoupled: bool = False


def adam_step_scalars(spec: OptimizerSpec, step: int, lr: float) -> tuple[float, float, float]:
    """The scalars of Adam step ``step`` (1-based), computed once in float64 for both twins:
    (step size, divisor of sqrt(v) before eps, decoupled decay factor).

    "v_hat":  p -= lr / c1 * m / (sqrt(v) / sqrt(c2) + eps)
    "v":      p -= lr * sqrt(c2) / c1 * m / (sqrt(v) + eps)
    with c1 = 1 - b1^t, c2 = 1 - b2^t; AdamW first multiplies p by 1 - lr * wd."""
    b1, b2 = spec.betas
    correction1, correction2 = 1.0 - b1 ** step, 1.0 - b2 ** step
    if spec.eps_placement == "v":
        step_size, root_correction = lr * correction2 ** 0.5 / correction1, 1.0
    else:
        step_size, root_correction = lr / correction1, correction2 ** 0.5
    return step_size, root_correction, 1.0 - lr * spec.weight_decay if spec.decoupled else 1.0


# Training precision, a run setting: float32; bfloat16 (mixed: bfloat16 compute with float32
# weights and optimizer state, torch autocast / Keras "mixed_bfloat16", losses in float32); or
# float64 (everything, for trajectory parity: float32 round-off differences between the two
# frameworks grow chaotically over a run, float64's start 1e9 times smaller).  float16 is not
# offered: it needs loss scaling, whose dynamics differ between the frameworks.
PRECISIONS = ("float32", "bfloat16", "float64")


def float_dtype(precision: str) -> str:
    """The dtype of weights, optimizer state, losses and predictions at ``precision``: bfloat16 is
    a compute dtype only, so everything stored stays float32 there."""
    return "float64" if precision == "float64" else "float32"


# The loss kinds: one vocabulary for the training recipes and the parity gradient check.
LOSSES = {
    "cross_entropy": "class indices (optional label smoothing in training)",
    "bce_logits": "0/1 labels on logits (multi-label)",
    "bce": "0/1 labels on probabilities, the log clamped at -100 as torch's BCELoss",
    "mse": "mean squared error (e.g. a reconstruction of the input)",
    "bce_dice": "BCE on probabilities + 1 - Dice (segmentation)",
    "aecnn_joint": "AECNN_JOINT_WEIGHTS[0] * BCE on the logits + [1] * MSE of the reconstruction",
}
AECNN_JOINT_WEIGHTS = (0.9, 0.1)
TRAINING_LOSSES = ("cross_entropy", "bce_logits", "bce_dice", "mse", "aecnn_joint")  # what a recipe may name
OUTPUT_LOSSES = ("cross_entropy", "bce_logits", "bce", "mse")  # per model output, in a gradient check


# Data parallelism: every replica (a process, or one device of a process) trains a fixed,
# contiguous shard of each global batch, so N replicas see exactly the samples one process sees.
# Each replica's loss is the mean over its shard; the engine averages the replicas' gradients
# (sum / N), so a shard's loss is weighted by shard / batch * N: that average is then the
# gradient of the whole batch's mean loss, unequal shards included.  The Dice term of
# "bce_dice" is not a per-sample mean: under N replicas it is each shard's own.
MIN_SHARD = 2  # a BatchNorm shard of one sample is an error in torch and zero variance in Keras


def shard_rows(batch: int, replicas: int, replica: int) -> slice:
    """The rows of a global batch of ``batch`` samples that ``replica`` (0-based) of ``replicas``
    trains: numpy.array_split's contiguous split, the first ``batch % replicas`` one row longer."""
    if not 0 <= replica < replicas:
        raise ValueError(f"replica {replica} is not one of 0..{replicas - 1}")
    small, extra = divmod(batch, replicas)
    start = replica * small + min(replica, extra)
    return slice(start, start + small + (replica < extra))


def shard_loss_weight(batch: int, replicas: int, replica: int) -> float:
    """The factor of ``replica``'s mean shard loss (1.0 for one replica)."""
    rows = shard_rows(batch, replicas, replica)
    return (rows.stop - rows.start) * replicas / batch
