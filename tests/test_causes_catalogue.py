"""The catalogue's NumPy models of layers (framework-free): each checked against an independent
computation, and the catalogue's rules (never blame an agreeing pair, name nothing it cannot
reproduce).  Real twins with planted bugs: parity/tests/test_named_causes.py."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.signal import correlate

from parity import causes

RNG = np.random.default_rng(0)


def test_convolution_matches_scipy_with_stride_dilation_and_padding():
    x, w = RNG.standard_normal((2, 3, 9, 11)), RNG.standard_normal((4, 3, 3, 3))
    ours = causes.convolve(x, w, None, (1, 1), (2, 2), 1, [(2, 2), (2, 2)])
    padded = np.pad(x, [(0, 0), (0, 0), (2, 2), (2, 2)])
    dilated = np.zeros((4, 3, 5, 5))
    dilated[:, :, ::2, ::2] = w
    expected = np.stack([sum(correlate(padded[n, c], dilated[o, c], mode="valid") for c in range(3))
                         for n in range(2) for o in range(4)]).reshape(2, 4, 9, 11)
    np.testing.assert_allclose(ours, expected, atol=1e-12)
    strided = causes.convolve(x, w, None, (2, 2), (1, 1), 1, [(1, 1), (1, 1)])
    full = causes.convolve(x, w, None, (1, 1), (1, 1), 1, [(1, 1), (1, 1)])
    np.testing.assert_allclose(strided, full[:, :, ::2, ::2], atol=1e-12)


def test_grouped_convolution_is_one_convolution_per_group():
    x, w = RNG.standard_normal((2, 4, 6, 7)), RNG.standard_normal((6, 2, 3, 3))
    grouped = causes.convolve(x, w, None, (1, 1), (1, 1), 2, [(1, 1), (1, 1)])
    first = causes.convolve(x[:, :2], w[:3], None, (1, 1), (1, 1), 1, [(1, 1), (1, 1)])
    np.testing.assert_allclose(grouped[:, :3], first, atol=1e-12)


@pytest.mark.parametrize("size, kernel, stride, expected", [(8, 3, 2, (0, 1)), (7, 3, 2, (1, 1)), (10, 3, 1, (1, 1)),
                                                           (9, 4, 2, (1, 2))])
def test_tensorflow_same_padding_puts_the_extra_pad_at_the_end(size, kernel, stride, expected):
    assert causes.same_padding(size, kernel, stride, 1) == expected


def test_pools_pad_with_their_own_values():
    x = -np.ones((1, 1, 2, 2))
    assert causes.pool(x, (3, 3), (1, 1), [(1, 1), (1, 1)], "max", -np.inf).max() == -1.0
    assert causes.pool(x, (3, 3), (1, 1), [(1, 1), (1, 1)], "max", 0.0).max() == 0.0
    # a corner sees 4 of 9 cells: torch's default counts the 5 pads, Keras' 'same' does not
    assert causes.pool(x, (3, 3), (1, 1), [(1, 1), (1, 1)], "mean", 0.0, True)[0, 0, 0, 0] == pytest.approx(-4 / 9)
    assert causes.pool(x, (3, 3), (1, 1), [(1, 1), (1, 1)], "mean", 0.0, False)[0, 0, 0, 0] == pytest.approx(-1.0)


def test_gru_step_by_hand():
    """One step from h = 0: n = tanh(W_in x + b_in + r * b_hn), h' = (1 - z) n."""
    weights = {"weight_ih_l0": RNG.standard_normal((6, 3)), "weight_hh_l0": RNG.standard_normal((6, 2)),
               "bias_ih_l0": RNG.standard_normal(6), "bias_hh_l0": RNG.standard_normal(6)}
    x = RNG.standard_normal((1, 1, 3))
    gi = x[0, 0] @ weights["weight_ih_l0"].T + weights["bias_ih_l0"]
    gh = weights["bias_hh_l0"]
    r = 1 / (1 + np.exp(-(gi[:2] + gh[:2])))
    z = 1 / (1 + np.exp(-(gi[2:4] + gh[2:4])))
    n = np.tanh(gi[4:] + r * gh[4:])
    np.testing.assert_allclose(causes.gru(x, weights)[0, 0], (1 - z) * n, atol=1e-14)


def test_bilinear_resize_keeps_corners_with_align_corners_and_averages_without():
    x = np.arange(4.0).reshape(1, 1, 2, 2)
    aligned = causes.resize(x, (3, 3), "bilinear", True)
    assert aligned[0, 0, 0, 0] == 0 and aligned[0, 0, -1, -1] == 3 and aligned[0, 0, 1, 1] == 1.5
    half = causes.resize(x, (4, 4), "bilinear", False)
    assert half[0, 0, 0, 0] == 0 and half[0, 0, 1, 1] == pytest.approx(0.75)
    np.testing.assert_array_equal(causes.resize(x, (4, 4), "nearest")[0, 0, :, 0], [0, 0, 2, 2])


def _bn_evidence(candidate: np.ndarray, eps_reference: float = 1e-5) -> causes.LayerEvidence:
    x = RNG.standard_normal((2, 3, 4, 5))
    weights = {"weight": RNG.uniform(0.5, 1.5, 3), "bias": RNG.standard_normal(3),
               "running_mean": RNG.standard_normal(3) * 0.1, "running_var": RNG.uniform(0.01, 0.1, 3)}
    reference = causes.batch_norm(x, weights, eps_reference)
    output = candidate(x, weights) if callable(candidate) else reference + candidate
    return causes.LayerEvidence("bn", "BatchNorm2d", "BatchNormalization", {"eps": eps_reference},
                                {"epsilon": 1e-3}, [x], reference, output, weights)


def test_an_epsilon_is_named_and_an_agreeing_or_unexplained_layer_is_not():
    named = causes.explain_layer(_bn_evidence(lambda x, w: causes.batch_norm(x, w, 1e-3)))
    assert named.key == "norm_epsilon" and str(named).startswith("probable cause:") and "epsilon=1e-05" in named.fix
    assert causes.explain_layer(_bn_evidence(0.0)) is None  # the same output
    assert causes.explain_layer(_bn_evidence(1e-15)) is None  # round-off
    assert causes.explain_layer(_bn_evidence(RNG.standard_normal((2, 3, 4, 5)) * 1e-4)) is None  # not catalogued


def test_an_unknown_kind_or_settings_the_model_does_not_cover_give_no_cause():
    evidence = _bn_evidence(lambda x, w: causes.batch_norm(x, w, 1e-3))
    assert causes.explain_layer(causes.LayerEvidence(**{**vars(evidence), "reference_kind": "MyNorm"})) is None
    assert causes.explain_layer(causes.LayerEvidence(**{**vars(evidence), "reference_config": {}})) is None


def _state(keras_momentum: float, unbiased: bool) -> causes.StateEvidence:
    x = RNG.standard_normal((4, 3, 2, 2)) * 2 + 1
    before = {"running_mean": np.zeros(3), "running_var": np.ones(3)}
    mean, var = x.mean(axis=(0, 2, 3)), x.var(axis=(0, 2, 3))
    unbiased_var = var * 16 / 15
    torch_after = {"running_mean": 0.9 * before["running_mean"] + 0.1 * mean,
                   "running_var": 0.9 * before["running_var"] + 0.1 * unbiased_var}
    k = keras_momentum
    keras_after = {"running_mean": k * before["running_mean"] + (1 - k) * mean,
                   "running_var": k * before["running_var"] + (1 - k) * (unbiased_var if unbiased else var)}
    return causes.StateEvidence("bn", "BatchNorm2d", "BatchNormalization", {"momentum": 0.1}, {"momentum": k},
                                x, before, torch_after, keras_after)


def test_batchnorm_statistics_name_the_variance_or_the_momentum():
    assert causes.explain_state(_state(0.9, unbiased=False)).key == "bn_running_variance_biased"
    assert causes.explain_state(_state(0.1, unbiased=False)).key == "bn_momentum_convention"
    assert "momentum=0.9" in causes.explain_state(_state(0.99, unbiased=False)).fix
    assert causes.explain_state(_state(0.9, unbiased=True)) is None  # a twin that agrees


def test_every_entry_names_the_reference_kinds_it_knows():
    keys = [entry.key for entry in causes.CATALOGUE]
    assert len(keys) == len(set(keys)) and all(entry.reference_kinds for entry in causes.CATALOGUE)
    assert len(keys) + len(causes.STATE_KEYS) >= 15
