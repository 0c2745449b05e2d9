"""Deterministic test inputs, made once on the NumPy side and fed to both frameworks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from canon.layout import activation_layout


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


@dataclass(frozen=True)
class InputSpec:
    """One model input, made on the NumPy side from the case's seed.

    ``layout`` (canon.layout.LAYOUTS) says how its axes cross between the frameworks: an
    ``image`` is NCHW in torch and NHWC in Keras, a ``sequence`` of token ids is the same in both.
    ``value_range`` (low, high): integers drawn uniformly from [low, high), floats uniformly from
    [low, high); without it, floats are standard normal (ints need a range)."""

    shape: tuple[int, ...]
    dtype: str = "float32"
    layout: str = "image"
    value_range: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", tuple(int(d) for d in self.shape))
        activation_layout(self.layout, self.shape)  # a known layout of the right rank
        kind = np.dtype(self.dtype).kind
        if kind not in "iuf b":
            raise ValueError(f"input dtype {self.dtype!r} is neither integer, boolean nor floating")
        if kind in "iu" and self.value_range is None:
            raise ValueError(f"an integer input ({self.dtype}, shape {self.shape}) needs a value_range (low, high), "
                             "e.g. (0, vocabulary size)")
        if self.value_range is not None and not self.value_range[0] < self.value_range[1]:
            raise ValueError(f"value_range must be (low, high) with low < high, got {self.value_range}")

    def make(self, seed: int) -> np.ndarray:
        rng = np.random.default_rng(seed)
        kind = np.dtype(self.dtype).kind
        if kind == "b":
            return rng.random(self.shape) < 0.5
        if kind in "iu":
            low, high = (int(v) for v in self.value_range)
            return rng.integers(low, high, size=self.shape).astype(self.dtype)
        if self.value_range is None:
            return rng.standard_normal(self.shape).astype(self.dtype)
        return rng.uniform(*self.value_range, size=self.shape).astype(self.dtype)


def make_inputs(specs: Sequence[InputSpec], seed: int) -> list[np.ndarray]:
    """One array per spec, each from its own stream of ``seed`` (input i from seed + i)."""
    return [spec.make(seed + index) for index, spec in enumerate(specs)]


def load_input_file(path: str) -> list[np.ndarray]:
    """The arrays of an ``.npz`` in the order they were saved (``x0, x1, ...`` or any names)."""
    from pathlib import Path

    if not Path(path).is_file():
        raise FileNotFoundError(f"input file not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = [data[key] for key in data.files]
    except (ValueError, OSError) as error:
        raise ValueError(f"{path} is not a readable .npz of input arrays: {error}") from None
    if not arrays:
        raise ValueError(f"{path} holds no arrays; save the model inputs with np.savez(path, x0, x1, ...)")
    return arrays


def check_inputs(arrays: Sequence[np.ndarray], layouts: Sequence[str], source: str) -> None:
    """Explicit inputs: one layout each, of the right rank, finite."""
    if len(arrays) != len(layouts):
        raise ValueError(f"{source}: {len(arrays)} input array(s) but {len(layouts)} layout(s) {list(layouts)}")
    for index, (array, declared) in enumerate(zip(arrays, layouts)):
        try:
            activation_layout(declared, array.shape)
        except ValueError as error:
            raise ValueError(f"{source}: input {index}: {error}") from None
        if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
            raise ValueError(f"{source}: input {index} holds NaN or Inf values")
