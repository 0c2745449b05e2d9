"""The training loop of every recipe, framework-free: one loop, either framework's trainer.

Everything that must be equal across frameworks happens here, in NumPy: the data order of
each epoch (from the seed and the epoch number alone, so a resumed run sees the same
batches), preprocessing, the learning-rate table, the plateau and early-stopping rules, the
choice of the best checkpoint and the metrics.  The trainer only does forward, backward and
the optimizer update.
"""

from __future__ import annotations

import functools
import sys
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from repro import metrics
from repro.data import augment, datasets
from repro.recipes import PlateauState, Recipe, clip_norm_at, lr_table
from repro.record import RunRecord

MULTI_LABEL, SEGMENTATION = datasets.MULTI_LABEL, datasets.SEGMENTATION


def preprocess(images: np.ndarray, recipe: Recipe) -> np.ndarray:
    """uint8 NHWC -> float32 NCHW: pixel/255, grayscale to RGB, central zero-padding, mean/std."""
    x = datasets.to_float_nchw(images)
    if recipe.to_rgb and x.shape[1] == 1:
        x = np.repeat(x, 3, axis=1)
    if recipe.normalize is not None:
        mean, std = (np.asarray(v, np.float32).reshape(1, -1, 1, 1) for v in recipe.normalize)
        x = (x - mean[:, : x.shape[1]]) / std[:, : x.shape[1]]
    if recipe.input_size is not None and x.shape[-1] < recipe.input_size:
        # normalise before padding, as the recipe: the padding is zeros of the normalised image
        top = (recipe.input_size - x.shape[2]) // 2
        left = (recipe.input_size - x.shape[3]) // 2
        padded = np.zeros(x.shape[:2] + (recipe.input_size, recipe.input_size), np.float32)
        padded[:, :, top:top + x.shape[2], left:left + x.shape[3]] = x
        x = padded
    return np.ascontiguousarray(x, dtype=np.float32)


def loss_targets(labels: np.ndarray, task: str) -> np.ndarray:
    """Class indices (int64, N) for single-label tasks, 0/1 float32 (N, L) for multi-label."""
    return labels.astype(np.float32) if task == MULTI_LABEL else labels.reshape(len(labels), -1)[:, 0].astype(np.int64)


@dataclass
class LoopState:
    """Where the run stands after its last completed epoch: saved with every checkpoint."""

    next_epoch: int = 0
    best_value: float | None = None
    best_epoch: int | None = None
    plateau: dict = field(default_factory=lambda: asdict(PlateauState()))
    metric_lines: int = 0
    stopped_early: bool = False


class Progress:
    """Epoch and batch progress on stderr (tqdm), silent when asked."""

    def __init__(self, enabled: bool):
        self.enabled = enabled

    def bar(self, total: int, desc: str, leave: bool):
        from tqdm import tqdm

        return tqdm(total=total, desc=desc, leave=leave, disable=not self.enabled, file=sys.stderr,
                    dynamic_ncols=True, mininterval=0.5)


def make_batch(split, rows: np.ndarray, recipe: Recipe, task: str, augment_seed: int | None = None):
    """Inputs (float32 NCHW) and loss targets of the samples ``rows``.  The recipe's image pipeline
    runs first: training batches (``augment_seed`` given) are resized, cropped and augmented, seeded
    per batch; evaluation batches only resized.  Masks follow their images; a reconstruction
    recipe's target is its input."""
    images = split.images[rows]
    masks = split.labels[rows].astype(np.uint8) if task == SEGMENTATION else None
    train_transform, eval_transform = _transforms(recipe.augment, recipe.resize, recipe.crop, recipe.eval_resize)
    transform = train_transform if augment_seed is not None else eval_transform
    if transform is not None:
        images, masks = augment.apply_to_batch(transform, images, masks, augment_seed)
    x = preprocess(images, recipe)
    if task == SEGMENTATION:
        return x, np.ascontiguousarray(masks.transpose(0, 3, 1, 2), dtype=np.float32)
    return x, (x if recipe.loss == "mse" else loss_targets(split.labels[rows], task))


_transforms = functools.lru_cache(maxsize=8)(augment.transforms)


def evaluate_split(trainer, split, recipe: Recipe, task: str) -> tuple[dict, np.ndarray]:
    """Loss (mean over samples) and the task's metrics (ACC and AUC; Dice at 0.5 for
    segmentation; none besides the loss for a reconstruction) of one split; returns the model's
    predictions too."""
    outputs, targets, losses, n = [], [], 0.0, len(split.labels)
    for index in datasets.batch_slices(n, recipe.eval_batch_size):
        x, y = make_batch(split, index, recipe, task)
        out, loss = trainer.evaluate(x, y)
        outputs.append(out)
        targets.append(y)
        losses += loss * len(out)
    outputs = np.concatenate(outputs)
    if task == SEGMENTATION:
        scores = {"dice": metrics.dice(outputs, np.concatenate(targets), threshold=0.5)}
    elif recipe.loss == "mse":
        scores = {}  # a reconstruction: its loss is the metric
    else:
        scores = metrics.evaluate(split.labels, outputs, task)
    return {"loss": losses / n, **scores}, outputs


def train(trainer, backend, dataset, recipe: Recipe, record: RunRecord, state: LoopState,
          progress: Progress, max_epochs_this_call: int | None = None) -> LoopState:
    """Run epochs from ``state.next_epoch``; checkpoint after each.  ``max_epochs_this_call``
    stops early on purpose (the resume test interrupts a run this way)."""
    if state.stopped_early:  # resumed after early stopping (its finish was interrupted): no more epochs
        return state
    train_split, task = dataset.splits["train"], dataset.task
    n = len(train_split.labels)
    batches = datasets.training_batches(n, recipe.batch_size)
    table = lr_table(recipe, len(batches))
    plateau = PlateauState(**state.plateau)
    epochs = progress.bar(recipe.epochs, "epochs", leave=True)
    epochs.update(state.next_epoch)
    done_now = 0
    for epoch in range(state.next_epoch, recipe.epochs):
        if max_epochs_this_call is not None and done_now >= max_epochs_this_call:
            break
        started = time.perf_counter()
        order = datasets.epoch_order(recipe.seed, epoch, n)
        clip = clip_norm_at(recipe, epoch)
        bar = progress.bar(len(batches), f"epoch {epoch + 1}/{recipe.epochs}", leave=False)
        train_loss = 0.0
        for b, index in enumerate(batches):
            step = epoch * len(batches) + b
            lr = float(table[step] * plateau.factor)
            rows = order[index]
            x, y = make_batch(train_split, rows, recipe, task, augment.batch_seed(recipe.seed, epoch, b))
            loss = trainer.train_step(x, y, lr, clip)
            if not np.isfinite(loss):
                raise FloatingPointError(f"loss is {loss} at epoch {epoch}, step {step} (lr {lr:.3g}): training diverged")
            train_loss += loss * len(rows)
            record.log({"kind": "step", "epoch": epoch, "step": step, "loss": loss, "lr": lr})
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.4f}")
        bar.close()
        val, _ = evaluate_split(trainer, dataset.splits["val"], recipe, task)
        weights = record.epoch_weights(epoch)
        backend.save_weights(str(weights), {"epoch": str(epoch)})
        entry = {"kind": "epoch", "epoch": epoch, "train_loss": train_loss / n,
                 **{f"val_{k}": v for k, v in val.items()}, "lr_factor": plateau.factor,
                 "weights": weights.name, "weights_sha256": record.digest(weights),
                 "wall_s": round(time.perf_counter() - started, 3)}
        monitored = entry[recipe.best]
        if state.best_value is None or (monitored > state.best_value if recipe.higher_is_better
                                        else monitored < state.best_value):
            state.best_value, state.best_epoch = monitored, epoch
            backend.save_weights(str(record.path("best.safetensors")), {"epoch": str(epoch)})
        entry["best_epoch"] = state.best_epoch
        record.log(entry)
        stop = plateau.update(recipe, val["loss"], monitored)
        state.next_epoch, state.plateau = epoch + 1, asdict(plateau)
        state.metric_lines, state.stopped_early = record.metric_lines(), stop
        record.save_checkpoint(epoch, asdict(state), trainer.optimizer_state())  # this epoch's weights are its own
        backend.barrier()  # data-parallel: no rank goes on before rank 0's checkpoint is on disk
        epochs.update(1)
        epochs.set_postfix({"val_loss": f"{val['loss']:.4f}", recipe.best: f"{monitored:.4f}"})
        done_now += 1
        if stop:
            break
    epochs.close()
    return state


def knn_evaluate(trainer, dataset, recipe: Recipe) -> dict:
    """medmnist_plus knn: no training; the k nearest train embeddings vote (ACC), and the
    fraction of them per class scores the AUC (0 under the seed code's knn_auc_zero quirk)."""
    def embed(split):
        return np.concatenate([trainer.embed(preprocess(split.images[i], recipe))
                               for i in datasets.batch_slices(len(split.labels), recipe.eval_batch_size)])

    train_split = dataset.splits["train"]
    bank = embed(train_split)
    results = {}
    for name in ("val", "test"):
        split = dataset.splits[name]
        neighbours = metrics.knn_neighbour_labels(bank, train_split.labels, embed(split), k=recipe.knn_k,
                                                  task=dataset.task)
        truth = split.labels if dataset.task == MULTI_LABEL else split.labels.reshape(-1)
        scores = metrics.knn_scores(neighbours, dataset.task, n_classes=dataset.num_classes)
        results[f"{name}_acc"] = float(metrics.medmnist_acc(truth, scores, dataset.task))
        results[f"{name}_auc"] = 0.0 if "knn_auc_zero" in recipe.quirks else metrics.medmnist_auc(
            truth, scores, dataset.task)
    return results
