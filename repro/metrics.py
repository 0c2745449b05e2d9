"""Metrics with the medmnist evaluator's definitions: ACC and AUC per task type (README "Training runs").

Framework-free (NumPy + scikit-learn) so that both twins are scored by the same code.
Scores are probabilities: softmax of the logits, or sigmoid for multi-label tasks.

The ACC and AUC definitions follow medmnist v3 ``medmnist/evaluator.py`` (getACC / getAUC).
One deliberate difference: where a ROC-AUC is undefined (only one class present in the truth)
medmnist's call to sklearn raises; here that AUC is NaN, so a small split cannot crash a run and
the NaN makes the gap visible instead of hiding it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from repro.data.datasets import BINARY, MULTI_CLASS, MULTI_LABEL, ORDINAL  # the task names, defined once

TASKS = (MULTI_LABEL, BINARY, MULTI_CLASS, ORDINAL)

# Distance-matrix elements held at once by knn_predict (float64: 128 MiB).
KNN_CHUNK_ELEMENTS = 2 ** 24


# -- input checks ------------------------------------------------------------------------------

def _check_task(task: str) -> None:
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; expected one of {TASKS}")


def _finite_float_array(values, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if np.isnan(array).any():
        raise ValueError(f"{name} contain NaN")
    if np.isinf(array).any():
        raise ValueError(f"{name} contain infinite values")
    return array


def _check_rows(y_true: np.ndarray, y_score: np.ndarray, score_name: str = "y_score") -> None:
    if y_true.ndim == 0 or y_score.ndim == 0:
        raise ValueError("y_true and scores must be arrays with one row per sample, got a scalar")
    if len(y_true) != len(y_score):
        raise ValueError(f"y_true has {len(y_true)} rows, {score_name} {len(y_score)}")
    if len(y_true) == 0:
        raise ValueError("y_true and scores are empty (no samples)")


def _label_vector(y_true: np.ndarray, task: str) -> np.ndarray:
    """N or N×1 labels -> N (medmnist squeezes the label axis for single-label tasks)."""
    if y_true.ndim == 2 and y_true.shape[1] == 1:
        return y_true[:, 0]
    if y_true.ndim != 1:
        raise ValueError(f"task {task!r} expects y_true of shape N or N×1, got {y_true.shape}")
    return y_true


def _checked(y_true, y_score, task: str) -> tuple[np.ndarray, np.ndarray]:
    """Validated (truth, scores): multi-label both N×L; otherwise truth N and scores N×C."""
    _check_task(task)
    y_true = _finite_float_array(y_true, "y_true values")
    y_score = _finite_float_array(y_score, "scores")
    _check_rows(y_true, y_score)
    if task == MULTI_LABEL:
        return _checked_multi_label(y_true, y_score)
    y_true = _label_vector(y_true, task)
    y_score = y_score[:, None] if y_score.ndim == 1 else y_score
    if y_score.ndim != 2:
        raise ValueError(f"scores must be N×C, got shape {y_score.shape}")
    if task == BINARY:
        _check_binary_columns(y_score)
    else:
        _check_class_labels(y_true, y_score.shape[1])
    return y_true, y_score


def _checked_multi_label(y_true: np.ndarray, y_score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if y_true.ndim != 2 or y_true.shape != y_score.shape:
        raise ValueError(f"multi-label y_true and scores must both be N×L with the same shape, "
                         f"got y_true {y_true.shape} and scores {y_score.shape}")
    return y_true, y_score


def _check_binary_columns(y_score: np.ndarray) -> None:
    # medmnist would take the last column of any width; more than two columns means a wrong task.
    if y_score.shape[1] not in (1, 2):
        raise ValueError(f"binary-class scores need 1 or 2 columns, got {y_score.shape[1]}")


def _check_class_labels(y_true: np.ndarray, n_classes: int) -> None:
    if np.any(y_true != np.round(y_true)) or y_true.min() < 0 or y_true.max() >= n_classes:
        raise ValueError(f"y_true labels must be integers in 0..{n_classes - 1} "
                         f"(scores have {n_classes} columns), got values {np.unique(y_true)[:10]}")


# -- probabilities from logits ------------------------------------------------------------------

def softmax(logits) -> np.ndarray:
    """Softmax over the last axis in float64; subtracting the row maximum avoids overflow."""
    z = np.asarray(logits, dtype=np.float64)
    exp = np.exp(z - z.max(axis=-1, keepdims=True))
    return exp / exp.sum(axis=-1, keepdims=True)


def sigmoid(logits) -> np.ndarray:
    """Logistic function in float64; exp(-|z|) never overflows, so both signs are stable."""
    z = np.asarray(logits, dtype=np.float64)
    exp_neg_abs = np.exp(-np.abs(z))
    return np.where(z >= 0, 1.0 / (1.0 + exp_neg_abs), exp_neg_abs / (1.0 + exp_neg_abs))


def scores_from_logits(logits, task: str) -> np.ndarray:
    """Multi-label -> sigmoid per label; otherwise softmax over classes.

    A binary task with a single logit column gets the sigmoid (that logit is the positive
    class's); a softmax over one column would be constantly 1.
    """
    _check_task(task)
    logits = _finite_float_array(logits, "logits")
    single_binary_logit = task == BINARY and (logits.ndim == 1 or logits.shape[-1] == 1)
    if task == MULTI_LABEL or single_binary_logit:
        return sigmoid(logits)
    return softmax(logits)


# -- medmnist ACC / AUC -------------------------------------------------------------------------

def _roc_auc(truth: np.ndarray, score: np.ndarray) -> float:
    """sklearn's ROC-AUC, NaN when only one class is present (undefined there)."""
    from sklearn.metrics import roc_auc_score  # lazy: sklearn import is slow and rarely needed

    if len(np.unique(truth)) < 2:
        return float("nan")
    return float(roc_auc_score(truth, score))


def medmnist_auc(y_true, y_score, task: str) -> float:
    """medmnist getAUC.

    multi-label: mean over labels of ROC-AUC(y_true[:, i], y_score[:, i]);
    binary: ROC-AUC of y_score[:, -1] (the positive class when there are two columns);
    multi-class / ordinal: unweighted mean over classes i of ROC-AUC(y_true == i, y_score[:, i]).
    NaN when any of those AUCs is undefined (a label or class with one truth value only).
    """
    y_true, y_score = _checked(y_true, y_score, task)
    if task == MULTI_LABEL:
        per_label = [_roc_auc(y_true[:, i], y_score[:, i]) for i in range(y_score.shape[1])]
        return float(np.mean(per_label))
    if task == BINARY:
        return _roc_auc(y_true, y_score[:, -1])
    one_vs_rest = [_roc_auc(y_true == i, y_score[:, i]) for i in range(y_score.shape[1])]
    return float(np.mean(one_vs_rest))


def medmnist_acc(y_true, y_score, task: str, threshold: float = 0.5) -> float:
    """medmnist getACC.

    multi-label: mean over labels of accuracy of (y_score[:, i] > threshold);
    binary: accuracy of (y_score[:, -1] > threshold), strict, so a score of exactly 0.5 is 0;
    multi-class / ordinal: accuracy of argmax over classes (first maximum on ties).
    """
    y_true, y_score = _checked(y_true, y_score, task)
    if task == MULTI_LABEL:
        per_label = np.mean(y_true == (y_score > threshold), axis=0)
        return float(np.mean(per_label))
    if task == BINARY:
        return float(np.mean(y_true == (y_score[:, -1] > threshold)))
    return float(np.mean(y_true == np.argmax(y_score, axis=1)))


def evaluate(y_true, logits, task: str) -> dict[str, float]:
    """{"acc", "auc"} of logits as plain Python floats (JSON-serialisable)."""
    scores = scores_from_logits(logits, task)
    return {"acc": medmnist_acc(y_true, scores, task), "auc": medmnist_auc(y_true, scores, task)}


# -- ChestX-ray14 style per-label table ---------------------------------------------------------

def per_label_auc(y_true, y_score, names: Sequence[str] | None = None) -> dict[str, float]:
    """ROC-AUC of every label of an N×L multi-label problem, keyed by name (default "0".."L-1").

    A label whose truth holds one value only gets NaN, so the table still lists it.
    """
    y_true, y_score = _checked(y_true, y_score, MULTI_LABEL)
    n_labels = y_score.shape[1]
    names = [str(i) for i in range(n_labels)] if names is None else list(names)
    if len(names) != n_labels:
        raise ValueError(f"names has {len(names)} entries, scores have {n_labels} label columns")
    if len(set(names)) != len(names):
        raise ValueError("names contain duplicates")
    return {name: _roc_auc(y_true[:, i], y_score[:, i]) for i, name in enumerate(names)}


def mean_auc(aucs: Mapping[str, float] | Sequence[float]) -> float:
    """Mean of the defined (non-NaN) AUCs; NaN when none is defined."""
    values = np.asarray(list(aucs.values()) if isinstance(aucs, Mapping) else list(aucs), np.float64)
    defined = values[~np.isnan(values)]
    return float(defined.mean()) if defined.size else float("nan")


# -- segmentation -------------------------------------------------------------------------------

def dice(prob, mask, smooth: float = 1e-6, threshold: float | None = None) -> float:
    """Dice = (2·Σ p·y + smooth) / (Σ p + Σ y + smooth) over the whole flattened batch.

    threshold None: soft Dice on the probabilities (the BCEDiceLoss term);
    otherwise p = (prob > threshold) first (the reported Dice metric).
    """
    p = _finite_float_array(prob, "prob values")
    y = _finite_float_array(mask, "mask values")
    if p.shape != y.shape:
        raise ValueError(f"prob has shape {p.shape}, mask {y.shape}")
    if threshold is not None:
        p = (p > threshold).astype(np.float64)
    return float((2.0 * np.sum(p * y) + smooth) / (np.sum(p) + np.sum(y) + smooth))


# -- chest_multilabel normal / abnormal ---------------------------------------------------------

def _no_finding_columns(y_true, y_score, no_finding_index: int) -> tuple[np.ndarray, np.ndarray]:
    """(truly normal, P(No Finding)) per sample, after the multi-label shape checks."""
    y_true, y_score = _checked(y_true, y_score, MULTI_LABEL)
    n_labels = y_score.shape[1]
    if not -n_labels <= no_finding_index < n_labels:
        raise ValueError(f"no_finding_index {no_finding_index} is out of range for {n_labels} labels")
    return y_true[:, no_finding_index] == 1, y_score[:, no_finding_index]


def normal_abnormal_accuracy(y_true, y_score, no_finding_index: int = -1, threshold: float = 0.5) -> float:
    """Accuracy of the normal-vs-abnormal decision.

    Predicted normal: y_score[:, no_finding_index] >= threshold (P("No Finding") ≥ 0.5);
    truly normal: y_true[:, no_finding_index] == 1. Result: mean(predicted normal == truly normal).
    """
    truly_normal, p_normal = _no_finding_columns(y_true, y_score, no_finding_index)
    return float(np.mean((p_normal >= threshold) == truly_normal))


def disease_recall(y_true, y_score, no_finding_index: int = -1, threshold: float = 0.5) -> float:
    """Among truly abnormal samples (y_true[:, no_finding_index] == 0), the fraction predicted
    abnormal (y_score[:, no_finding_index] < threshold). NaN when no sample is abnormal."""
    truly_normal, p_normal = _no_finding_columns(y_true, y_score, no_finding_index)
    abnormal = ~truly_normal
    if not abnormal.any():
        return float("nan")
    return float(np.mean(p_normal[abnormal] < threshold))


# -- medmnist_plus kNN --------------------------------------------------------------------------

def _squared_distances(queries: np.ndarray, bank: np.ndarray, bank_norms: np.ndarray) -> np.ndarray:
    """|q - b|² by expansion (one matrix product); clipped because rounding can dip below 0."""
    squared = (queries ** 2).sum(axis=1)[:, None] - 2.0 * queries @ bank.T + bank_norms[None, :]
    return np.maximum(squared, 0.0)


def _nearest_indices(distances: np.ndarray, k: int) -> np.ndarray:
    """k nearest per row; equal distances go to the lower train index.

    A partition finds the k-th distance in linear time; only the candidates up to it are then
    sorted (stable, in index order), which breaks ties by index without sorting every row.
    """
    kth = np.partition(distances, k - 1, axis=1)[:, k - 1]
    nearest = np.empty((len(distances), k), dtype=np.int64)
    for row, (row_distances, limit) in enumerate(zip(distances, kth)):
        candidates = np.flatnonzero(row_distances <= limit)
        order = np.argsort(row_distances[candidates], kind="stable")
        nearest[row] = candidates[order[:k]]
    return nearest


def _vote(neighbour_labels: np.ndarray, task: str) -> np.ndarray:
    """Multi-label: mean of neighbour labels > 0.5; otherwise majority, ties to the smallest label."""
    if task == MULTI_LABEL:
        return (neighbour_labels.mean(axis=1) > 0.5).astype(np.int64)
    n_classes = int(neighbour_labels.max()) + 1
    # argmax returns the first maximum, i.e. the smallest label among tied counts
    return np.array([np.bincount(row, minlength=n_classes).argmax() for row in neighbour_labels])


def _knn_inputs(train_embeddings, train_labels, query_embeddings, k: int, task: str):
    _check_task(task)
    bank = _finite_float_array(train_embeddings, "train embeddings")
    queries = _finite_float_array(query_embeddings, "query embeddings")
    labels = _finite_float_array(train_labels, "train labels")
    bank, queries = bank.reshape(len(bank), -1), queries.reshape(len(queries), -1)
    if len(bank) == 0:
        raise ValueError("train embeddings are empty")
    if len(labels) != len(bank):
        raise ValueError(f"train_labels has {len(labels)} rows, train_embeddings {len(bank)}")
    if queries.shape[1] != bank.shape[1]:
        raise ValueError(f"query embeddings have {queries.shape[1]} features, train embeddings {bank.shape[1]}")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    if task == MULTI_LABEL:
        if labels.ndim != 2:
            raise ValueError(f"multi-label train_labels must be N×L, got shape {labels.shape}")
    else:
        labels = _label_vector(labels, task)
        if np.any(labels != np.round(labels)) or labels.min() < 0:
            raise ValueError("train_labels must be non-negative integers")
    return bank, labels.astype(np.int64), queries


def knn_neighbour_labels(train_embeddings, train_labels, query_embeddings, k: int = 11,
                         task: str = MULTI_CLASS) -> np.ndarray:
    """The labels of each query's k nearest train embeddings: N×k (multi-label N×k×L).

    Euclidean distance in float64; equal distances go to the lower train index; k is capped at
    the train-set size.  Queries are processed in chunks so the distance matrix stays bounded
    in memory."""
    bank, labels, queries = _knn_inputs(train_embeddings, train_labels, query_embeddings, k, task)
    k = min(int(k), len(bank))
    bank_norms = (bank ** 2).sum(axis=1)
    rows_per_chunk = max(1, KNN_CHUNK_ELEMENTS // len(bank))
    chunks = [labels[_nearest_indices(_squared_distances(queries[start:start + rows_per_chunk], bank, bank_norms), k)]
              for start in range(0, len(queries), rows_per_chunk)]
    return np.concatenate(chunks) if chunks else np.zeros((0, k) + labels.shape[1:], dtype=np.int64)


def knn_predict(train_embeddings, train_labels, query_embeddings, k: int = 11,
                task: str = MULTI_CLASS) -> np.ndarray:
    """Predicted labels of the queries from their k nearest train embeddings (medmnist_plus knn).

    Single-label tasks: majority vote, ties to the smallest label, returns shape N.  Multi-label:
    a label is 1 when the mean of the neighbours' labels is > 0.5, returns N×L."""
    neighbours = knn_neighbour_labels(train_embeddings, train_labels, query_embeddings, k, task)
    if len(neighbours) == 0:  # no queries: an empty prediction of the right shape
        return np.zeros((0,) + neighbours.shape[2:], dtype=np.int64)
    return _vote(neighbours, task)


def knn_scores(neighbour_labels: np.ndarray, task: str, n_classes: int | None = None) -> np.ndarray:
    """Scores for ROC-AUC from the neighbours' votes: the fraction of the k neighbours of each
    class (N×C; C = ``n_classes``, default the largest label seen + 1), or of each label that is
    1 (multi-label, N×L) — what a k-NN classifier's predicted probabilities are."""
    neighbour_labels = np.asarray(neighbour_labels)
    if task == MULTI_LABEL:
        return neighbour_labels.mean(axis=1)
    classes = int(n_classes if n_classes is not None else neighbour_labels.max() + 1)
    return np.stack([(neighbour_labels == c).mean(axis=1) for c in range(classes)], axis=1)
