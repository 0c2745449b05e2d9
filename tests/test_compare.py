"""The comparator: pass rule, modes, NaN/Inf handling, metrics."""

import numpy as np
import pytest
from hypothesis import given, strategies as st
from hypothesis.extra import numpy as hnp

from parity.compare import LayerwiseResult, bitwise_equal, compare, compare_named
from canon.tolerances import Tolerance, ToleranceSet

F32 = Tolerance(rtol=1.3e-6, atol=1e-5)
finite = st.floats(-1e6, 1e6, width=32)
vectors = hnp.arrays(np.float32, st.integers(1, 30), elements=finite)


@given(vectors, st.integers(0, 29), st.sampled_from(["elementwise", "max", "mean"]))
def test_nan_never_passes_against_a_number(reference, position, mode):
    actual = reference.copy()
    actual[position % reference.size] = np.nan
    result = compare(actual, reference, Tolerance(1e30, 1e30, mode))
    assert not result.passed and result.nonfinite_mismatches == 1


@given(vectors, st.sampled_from(["elementwise", "max", "mean"]))
def test_identical_arrays_pass_with_zero_error(x, mode):
    result = compare(x, x.copy(), Tolerance(0.0, 0.0, mode))
    assert result.passed and result.max_abs == 0.0 and result.mismatch_fraction == 0.0


@given(st.floats(1e-3, 1e3), st.floats(1e-8, 1e-2), st.floats(1e-8, 1e-2), st.sampled_from([-1, 1]))
def test_pass_rule_is_atol_plus_rtol_times_reference(reference, rtol, atol, sign):
    bound = atol + rtol * reference
    ref = np.array([reference])
    assert compare(ref + sign * 0.5 * bound, ref, Tolerance(rtol, atol)).passed
    assert not compare(ref + sign * 1.5 * bound, ref, Tolerance(rtol, atol)).passed


def test_matching_nan_and_inf_positions_pass_but_inf_sign_matters():
    ref = np.array([1.0, np.nan, np.inf, -np.inf])
    assert compare(ref.copy(), ref, F32).passed
    flipped = ref.copy()
    flipped[2] = -np.inf
    result = compare(flipped, ref, F32)
    assert not result.passed and "NaN/Inf" in result.reason


def test_modes_judge_differently():
    ref = np.ones(100)
    actual = ref.copy()
    actual[0] += 1e-3  # one bad element
    assert not compare(actual, ref, Tolerance(0, 1e-4, "elementwise")).passed
    assert not compare(actual, ref, Tolerance(0, 1e-4, "max")).passed
    assert compare(actual, ref, Tolerance(0, 1e-4, "mean")).passed  # mean error is 1e-5


def test_metrics_locate_the_worst_element_and_guard_the_relative_error():
    ref = np.zeros((2, 3), np.float32)
    ref[0, 0] = 100.0
    actual = ref.copy()
    actual[1, 2] = 1e-3  # next to a zero reference
    result = compare(actual, ref, F32)
    assert result.max_abs_index == (1, 2)
    assert result.max_rel == pytest.approx(1e-3 / (1e-3 * 100.0))  # floor: 1e-3 of max|r|
    assert result.scale_rel == pytest.approx(1e-5)
    assert result.mismatch_fraction == pytest.approx(1 / 6)


def test_cosine_and_shape_mismatch():
    a = np.array([1.0, 0.0])
    assert compare(a, a, F32).cosine == pytest.approx(1.0)
    assert compare(-a, a, Tolerance(10, 10)).cosine == pytest.approx(-1.0)
    result = compare(np.zeros((2, 3)), np.zeros((3, 2)), F32)
    assert not result.passed and "shape mismatch" in result.reason


def test_compare_named_reports_first_divergent_and_missing():
    ref = {"a": np.ones(3), "b": np.ones(3), "c": np.ones(3)}
    actual = {"a": np.ones(3), "b": np.ones(3) * 2}
    result = compare_named(actual, ref, ["a", "b", "c"], ToleranceSet())
    assert isinstance(result, LayerwiseResult)
    assert result.first_divergent == "b" and not result.passed
    assert result.rows[2].reason == "missing from actual"


def test_bitwise_equal_distinguishes_dtype_and_negative_zero():
    assert bitwise_equal(np.zeros(2, np.float32), np.zeros(2, np.float32))
    assert not bitwise_equal(np.zeros(2, np.float32), np.zeros(2, np.float64))
    assert not bitwise_equal(np.array([0.0]), np.array([-0.0]))


def _failed(max_abs: float):
    from parity.compare import TensorComparison

    return TensorComparison("grad:w", False, (3,), {}, max_abs=max_abs, reason="outside")


def test_gradient_rejudged_on_the_models_gradient_scale():
    from parity.compare import on_global_scale

    tolerance = Tolerance(rtol=1e-4, atol=1e-5, mode="max")
    assert on_global_scale(_failed(1e-4), scale=10.0, tolerance=tolerance).passed  # 1e-4 <= 1e-5 + 1e-3
    assert not on_global_scale(_failed(1e-4), scale=0.1, tolerance=tolerance).passed


def test_gradient_rejudged_by_each_frameworks_own_float32_error():
    from parity.compare import explained_by_own_roundoff

    tolerance = Tolerance(rtol=1e-4, atol=1e-5, mode="max")
    own = {"torch": 2.3e-4, "tf": 6e-6}  # AECNN's first conv, measured
    assert explained_by_own_roundoff(_failed(2.3e-4), own, 1.5, tolerance).passed
    assert not explained_by_own_roundoff(_failed(1e-3), own, 1.5, tolerance).passed  # more than both errors
    assert not explained_by_own_roundoff(_failed(2.3e-4), {"torch": 1e-2, "tf": 6e-6}, 1.5, tolerance).passed


def test_gradient_rejudged_by_the_float64_gradients_own_jump():
    from parity.compare import explained_by_discontinuity

    tolerance = Tolerance(rtol=1e-4, atol=1e-5, mode="max")
    # UNet's decoder.7.double_conv.0, measured: the twins differ by 2.47e-4 and the float64
    # gradient itself moves by 2.47e-4 under 1e-6 input perturbations
    row = explained_by_discontinuity(_failed(2.47e-4), jump=2.47e-4, scale=0.06, tolerance=tolerance)
    assert row.passed and "discontinuous at this input" in row.reason
    assert not explained_by_discontinuity(_failed(1e-3), jump=2.47e-4, scale=0.06, tolerance=tolerance).passed
    # a smooth gradient (no jump, or none measured) explains nothing
    assert not explained_by_discontinuity(_failed(2.47e-4), jump=0.0, scale=0.06, tolerance=tolerance).passed
    assert not explained_by_discontinuity(_failed(2.47e-4), jump=None, scale=0.06, tolerance=tolerance).passed


def test_a_chunked_comparison_reports_what_a_whole_tensor_pass_does(monkeypatch):
    """Large tensors are judged in pieces; the statistics must not depend on the piece size."""
    import parity.compare as comparator
    from canon.tolerances import Tolerance

    rng = np.random.default_rng(4)
    r = rng.standard_normal((37, 53))
    a = r + rng.standard_normal(r.shape) * 1e-6
    a[3, 7], r[10, 1], a[20, 2], r[20, 2] = 0.5, np.nan, np.inf, np.inf
    a[10, 1] = np.nan
    for mode in ("elementwise", "max", "mean"):
        whole = comparator.compare(a, r, Tolerance(1e-5, 1e-6, mode), "t")
        monkeypatch.setattr(comparator, "CHUNK", 100)
        pieces = comparator.compare(a, r, Tolerance(1e-5, 1e-6, mode), "t")
        monkeypatch.setattr(comparator, "CHUNK", 1 << 22)
        assert (pieces.passed, pieces.max_abs, pieces.max_abs_index, pieces.max_rel, pieces.mismatch_fraction) == \
            (whole.passed, whole.max_abs, whole.max_abs_index, whole.max_rel, whole.mismatch_fraction)
        assert pieces.mean_abs == pytest.approx(whole.mean_abs, rel=1e-12)
        assert pieces.cosine == pytest.approx(whole.cosine, rel=1e-12)
    assert whole.max_abs_index == (3, 7) and whole.nonfinite_mismatches == 0
