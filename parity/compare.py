"""The comparator: judges arrays produced by the runners.  NumPy only.

Every comparison reports max abs error (and where), max relative error
(guarded near zero), mean abs error, cosine similarity and the fraction of
elements outside tolerance.  NaN/Inf must sit at the same positions (with the
same sign for Inf) in both arrays, whatever the mode: a NaN never passes
against a number.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from spec.tolerances import Tolerance, ToleranceSet

# Denominators of the relative error below this fraction of the reference's
# largest magnitude are raised to it, so values near zero do not dominate.
RELATIVE_FLOOR = 1e-3


@dataclass
class TensorComparison:
    name: str
    passed: bool
    shape: tuple[int, ...] | None
    tolerance: dict
    max_abs: float | None = None
    max_abs_index: tuple[int, ...] | None = None
    max_rel: float | None = None
    scale_rel: float | None = None  # max_abs / max|reference|
    mean_abs: float | None = None
    cosine: float | None = None
    mismatch_fraction: float | None = None
    nonfinite_mismatches: int = 0
    reason: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def _cosine(a: np.ndarray, r: np.ndarray) -> float:
    norm = float(np.linalg.norm(a) * np.linalg.norm(r))
    if norm == 0.0:
        return 1.0 if not (a.any() or r.any()) else 0.0
    return float(np.dot(a.ravel(), r.ravel()) / norm)


def compare(actual, reference, tolerance: Tolerance, name: str = "") -> TensorComparison:
    """Judge ``actual`` against ``reference`` with the pass rule |a-r| <= atol + rtol*|r|."""
    a, r = np.asarray(actual), np.asarray(reference)
    tol = asdict(tolerance)
    if a.shape != r.shape:
        return TensorComparison(name, False, None, tol, reason=f"shape mismatch: actual {a.shape} vs reference {r.shape}")
    a, r = a.astype(np.float64), r.astype(np.float64)
    if a.size == 0:
        return TensorComparison(name, True, a.shape, tol, 0.0, None, 0.0, 0.0, 0.0, 1.0, 0.0)

    nonfinite_mismatch = (
        (np.isnan(a) != np.isnan(r)) | (np.isposinf(a) != np.isposinf(r)) | (np.isneginf(a) != np.isneginf(r))
    )
    finite = np.isfinite(a) & np.isfinite(r)
    with np.errstate(invalid="ignore", over="ignore"):  # inf - inf; judged by position above
        diff = np.where(finite, np.abs(a - r), 0.0)
    magnitude = np.where(finite, np.abs(r), 0.0)
    outside = (diff > tolerance.atol + tolerance.rtol * magnitude) | nonfinite_mismatch

    scale = float(magnitude.max())
    floor = max(RELATIVE_FLOOR * scale, np.finfo(np.float32).tiny)
    worst = int(np.argmax(diff))
    max_abs, mean_abs = float(diff.ravel()[worst]), float(diff[finite].mean()) if finite.any() else 0.0
    bad_nonfinite = int(nonfinite_mismatch.sum())

    if tolerance.mode == "elementwise":
        passed = not outside.any()
    elif tolerance.mode == "max":
        passed = max_abs <= tolerance.atol + tolerance.rtol * scale
    else:  # mean
        passed = mean_abs <= tolerance.atol + tolerance.rtol * float(magnitude[finite].mean() if finite.any() else 0.0)
    passed = passed and bad_nonfinite == 0
    reason = ""
    if bad_nonfinite:
        reason = f"{bad_nonfinite} NaN/Inf position(s) differ"
    elif not passed:
        reason = f"{int(outside.sum())} element(s) outside tolerance ({tolerance.mode})"
    return TensorComparison(
        name=name, passed=bool(passed), shape=tuple(a.shape), tolerance=tol,
        max_abs=max_abs, max_abs_index=tuple(int(i) for i in np.unravel_index(worst, a.shape)),
        max_rel=float((diff / np.maximum(magnitude, floor)).max()),
        scale_rel=max_abs / scale if scale > 0 else (0.0 if max_abs == 0 else float("inf")), mean_abs=mean_abs,
        cosine=_cosine(np.where(finite, a, 0.0), np.where(finite, r, 0.0)),
        mismatch_fraction=float(outside.mean()), nonfinite_mismatches=bad_nonfinite, reason=reason,
    )


def bitwise_equal(a, b) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    return a.shape == b.shape and a.dtype == b.dtype and a.tobytes() == b.tobytes()


@dataclass
class LayerwiseResult:
    """Per-layer comparisons in topological order; ``first_divergent`` names the first failure."""

    mode: str
    rows: list[TensorComparison] = field(default_factory=list)

    @property
    def first_divergent(self) -> str | None:
        return next((row.name for row in self.rows if not row.passed), None)

    @property
    def passed(self) -> bool:
        return all(row.passed for row in self.rows)

    def worst(self, metric: str = "max_abs") -> TensorComparison | None:
        rated = [row for row in self.rows if getattr(row, metric) is not None]
        return max(rated, key=lambda row: getattr(row, metric), default=None)

    def to_dict(self) -> dict:
        return {
            "mode": self.mode, "passed": self.passed, "first_divergent": self.first_divergent,
            "layers": [row.to_dict() for row in self.rows],
        }


def compare_named(actual: dict, reference: dict, names: list[str], tolerances: ToleranceSet,
                  key=lambda name: name, mode: str = "") -> LayerwiseResult:
    """Compare ``actual[key(n)]`` with ``reference[key(n)]`` for each name, in order."""
    result = LayerwiseResult(mode)
    for name in names:
        tolerance = tolerances.for_layer(name)
        if key(name) not in actual or key(name) not in reference:
            side = "actual" if key(name) not in actual else "reference"
            result.rows.append(TensorComparison(name, False, None, asdict(tolerance), reason=f"missing from {side}"))
            continue
        result.rows.append(compare(actual[key(name)], reference[key(name)], tolerance, name))
    return result
