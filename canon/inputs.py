"""Deterministic test inputs, made once on the NumPy side and fed to both frameworks."""

from __future__ import annotations

import numpy as np


def check_input_shape(shape: tuple[int, ...], allow_square: bool = False) -> None:
    """Equal dims hide transposition bugs: insist on batch >= 2 and H != W.

    ``allow_square`` is for architectures that fix a square input (a paper head that
    flattens a 7x7 map); pair such a case with a non-square one of the same blocks.
    """
    if len(shape) == 4:
        n, c, h, w = shape
        if n < 2 or (h == w and not allow_square):
            raise ValueError(f"parity input {shape} must have batch >= 2 and H != W")


def parity_input(shape: tuple[int, ...], seed: int = 0, dtype: str = "float32", allow_square: bool = False) -> np.ndarray:
    """Standard-normal NCHW input from a fixed seed."""
    check_input_shape(tuple(shape), allow_square)
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def class_targets(batch: int, num_classes: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, num_classes, size=batch).astype(np.int64)
