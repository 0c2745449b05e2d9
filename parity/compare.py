"""The comparator: judges arrays produced by the runners.  NumPy only.

Every comparison reports max abs error (and where), max relative error
(guarded near zero), mean abs error, cosine similarity and the fraction of
elements outside tolerance.  NaN/Inf must sit at the same positions (with the
same sign for Inf) in both arrays, whatever the mode: a NaN never passes
against a number.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

import numpy as np

from canon.tolerances import Tolerance, ToleranceSet

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
    # each framework's own float32 error (against its float64 result), where known
    own_float32_error: dict | None = None

    def to_dict(self) -> dict:
        return asdict(self)


# Large tensors (VGG's 100M-element classifier) are judged this many elements at a time: the
# float64 temporaries of a whole-tensor pass took several gigabytes.
CHUNK = 1 << 22


def _chunks(a: np.ndarray, r: np.ndarray):
    """Flat float64 pieces of both arrays, in order, with their offset."""
    a, r = a.reshape(-1), r.reshape(-1)
    for start in range(0, a.size, CHUNK):
        yield start, a[start:start + CHUNK].astype(np.float64), r[start:start + CHUNK].astype(np.float64)


def compare(actual, reference, tolerance: Tolerance, name: str = "") -> TensorComparison:
    """Judge ``actual`` against ``reference`` with the pass rule |a-r| <= atol + rtol*|r|."""
    a, r = np.asarray(actual), np.asarray(reference)
    tol = asdict(tolerance)
    if a.shape != r.shape:
        return TensorComparison(name, False, None, tol, reason=f"shape mismatch: actual {a.shape} vs reference {r.shape}")
    if a.size == 0:
        return TensorComparison(name, True, a.shape, tol, 0.0, None, 0.0, 0.0, 0.0, 1.0, 0.0)

    # pass 1: the reference's largest finite magnitude, which the relative-error floor needs
    scale = 0.0
    for _, ca, cr in _chunks(a, r):
        finite = np.isfinite(ca) & np.isfinite(cr)
        if finite.any():
            scale = max(scale, float(np.abs(cr[finite]).max()))
    floor = max(RELATIVE_FLOOR * scale, np.finfo(np.float32).tiny)

    # pass 2: every statistic, accumulated chunk by chunk
    max_abs, worst, max_rel, outside_count, bad_nonfinite = -1.0, 0, 0.0, 0, 0
    diff_sum, magnitude_sum, finite_count = 0.0, 0.0, 0
    dot, norm_a, norm_r, any_a, any_r = 0.0, 0.0, 0.0, False, False
    for start, ca, cr in _chunks(a, r):
        nonfinite_mismatch = (np.isnan(ca) != np.isnan(cr)) | (np.isposinf(ca) != np.isposinf(cr)) \
            | (np.isneginf(ca) != np.isneginf(cr))
        finite = np.isfinite(ca) & np.isfinite(cr)
        with np.errstate(invalid="ignore", over="ignore"):  # inf - inf; judged by position above
            diff = np.where(finite, np.abs(ca - cr), 0.0)
        magnitude = np.where(finite, np.abs(cr), 0.0)
        outside_count += int(((diff > tolerance.atol + tolerance.rtol * magnitude) | nonfinite_mismatch).sum())
        bad_nonfinite += int(nonfinite_mismatch.sum())
        k = int(np.argmax(diff))
        if diff[k] > max_abs:
            max_abs, worst = float(diff[k]), start + k
        max_rel = max(max_rel, float((diff / np.maximum(magnitude, floor)).max()))
        diff_sum, magnitude_sum, finite_count = diff_sum + float(diff[finite].sum()), \
            magnitude_sum + float(magnitude[finite].sum()), finite_count + int(finite.sum())
        fa, fr = np.where(finite, ca, 0.0), np.where(finite, cr, 0.0)
        dot, norm_a, norm_r = dot + float(fa @ fr), norm_a + float(fa @ fa), norm_r + float(fr @ fr)
        any_a, any_r = any_a or bool(fa.any()), any_r or bool(fr.any())

    mean_abs = diff_sum / finite_count if finite_count else 0.0
    if tolerance.mode == "elementwise":
        passed = outside_count == 0
    elif tolerance.mode == "max":
        passed = max_abs <= tolerance.atol + tolerance.rtol * scale
    else:  # mean
        passed = mean_abs <= tolerance.atol + tolerance.rtol * (magnitude_sum / finite_count if finite_count else 0.0)
    passed = passed and bad_nonfinite == 0
    reason = ""
    if bad_nonfinite:
        reason = f"{bad_nonfinite} NaN/Inf position(s) differ"
    elif not passed:
        reason = f"{outside_count} element(s) outside tolerance ({tolerance.mode})"
    norm = float(np.sqrt(norm_a) * np.sqrt(norm_r))
    cosine = (1.0 if not (any_a or any_r) else 0.0) if norm == 0.0 else dot / norm
    return TensorComparison(
        name=name, passed=bool(passed), shape=tuple(a.shape), tolerance=tol,
        max_abs=max_abs, max_abs_index=tuple(int(i) for i in np.unravel_index(worst, a.shape)),
        max_rel=max_rel, scale_rel=max_abs / scale if scale > 0 else (0.0 if max_abs == 0 else float("inf")),
        mean_abs=mean_abs, cosine=cosine, mismatch_fraction=outside_count / a.size,
        nonfinite_mismatches=bad_nonfinite, reason=reason,
    )


def on_global_scale(row: TensorComparison, scale: float, tolerance: Tolerance) -> TensorComparison:
    """Re-judge a failed gradient against the model's largest gradient instead of its own.

    A small gradient tensor (a bias before BatchNorm, whose true gradient is zero) carries
    round-off of the model's large terms that cancelled in it: judged on the scale of the
    whole model's gradient (what an optimizer step sees) the error is round-off; the float64
    check proves the semantics."""
    if row.passed or row.max_abs is None or row.nonfinite_mismatches:
        return row
    bound = tolerance.atol + tolerance.rtol * scale
    if row.max_abs > bound:
        return row
    return replace(row, passed=True, reason=f"on the model's gradient scale: |d| {row.max_abs:.2e} <= "
                                             f"{tolerance.atol:g} + {tolerance.rtol:g} * {scale:.2e}")


# How far a framework's own float32 gradient may sit from its float64 one, on the model's gradient scale.
OWN_ROUNDOFF_BOUND = 1e-3


def explained_by_own_roundoff(row: TensorComparison, own: dict, scale: float, tolerance: Tolerance) -> TensorComparison:
    """Re-judge a failed gradient by each framework's own float32 error (x32 vs its x64).

    Large float32 reductions (a first conv's weight gradient sums ~10^5 terms) carry
    round-off that depends on the kernel's summation order: on AECNN, torch's own float32
    gradient is 2.3e-4 from its float64 one and TF's 6e-6.  When both own errors are small on
    the model's gradient scale and the twins' difference is no larger than their sum, the
    difference is that round-off: the float64 check has already proved the semantics."""
    if row.passed or row.max_abs is None or row.nonfinite_mismatches:
        return row
    errors = list(own.values())
    bound = tolerance.atol + tolerance.rtol * scale
    if max(errors) <= OWN_ROUNDOFF_BOUND * scale and row.max_abs <= sum(errors) + bound:
        return replace(row, passed=True, reason=f"own float32 round-off: |d| {row.max_abs:.2e} <= "
                                                 f"{' + '.join(f'{e:.2e}' for e in errors)} + {bound:.2e}")
    return row


# Relative size of the input perturbations that probe a gradient's continuity: about the
# float32 round-off that a forward pass of tens of layers accumulates (measured 1e-6 at
# UNet's bottleneck), so a kink that float32 cannot resolve is crossed by some of them.
CONTINUITY_PROBE = 1e-6


def explained_by_discontinuity(row: TensorComparison, jump: float | None, scale: float,
                               tolerance: Tolerance) -> TensorComparison:
    """Re-judge a failed gradient by how far the *float64* gradient itself moves when the
    input moves by float32 round-off (``jump``: the largest change over a few such probes).

    A ReLU whose input sits within round-off of 0 at this input makes the gradient a step
    function of round-off: each framework's float32 gradient lands on either side, whatever
    its summation order.  On UNet (BatchNorm) one such value among the 12 that a bottleneck
    channel holds moves a BN bias gradient by 12%, in float64 as in float32.  A difference no
    larger than that jump says nothing about the twins; the float64 check proves the semantics."""
    if row.passed or row.max_abs is None or row.nonfinite_mismatches or not jump:
        return row
    bound = tolerance.atol + tolerance.rtol * scale
    if row.max_abs > jump + bound:
        return row
    return replace(row, passed=True, reason=f"discontinuous at this input: |d| {row.max_abs:.2e} <= the float64 "
                                             f"gradient's own jump {jump:.2e} under {CONTINUITY_PROBE:g} input "
                                             f"perturbations + {bound:.2e}")


def own_error(float32_result, float64_result) -> float:
    """max |x32 - x64|: how far one framework's float32 result is from its own float64 one."""
    a, r = np.asarray(float32_result), np.asarray(float64_result)
    return max((float(np.abs(ca - cr).max()) for _, ca, cr in _chunks(a, r)), default=0.0)


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
