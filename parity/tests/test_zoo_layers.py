"""The zoo's layers that Keras lacks or gets subtly different, probed alone in both frameworks
and against the spec: torch's adaptive-pool bins, PixelShuffle's channel order, ClippedReLU's
gradient at its boundaries.  Each naive Keras port is shown to be caught."""

from __future__ import annotations

import numpy as np
import pytest

from canon.models.vgg import adaptive_pool_bins
from parity.protocol import INPUT_GRADIENT

PROBES = {"torch": "tests.twins.torch_probes:create", "tf": "tests.twins.keras_probes:create"}


def _build(runner, probe: str, **config):
    return runner.build(PROBES[runner.framework], probe, config)


def _forward(runner, probe: str, x: np.ndarray, **config) -> np.ndarray:
    model = _build(runner, probe, **config)
    try:
        return runner.forward(model, x)[0]["output:0"]
    finally:
        runner.free(model)


def _adaptive_pool_reference(x: np.ndarray, output_size: tuple[int, int]) -> np.ndarray:
    rows = adaptive_pool_bins(x.shape[2], output_size[0])
    cols = adaptive_pool_bins(x.shape[3], output_size[1])
    x = x.astype(np.float64)
    return np.stack([np.stack([x[:, :, r0:r1, c0:c1].mean(axis=(2, 3)) for c0, c1 in cols], -1)
                     for r0, r1 in rows], -2)


@pytest.mark.parametrize("size", [(2, 3), (9, 10), (13, 20), (50, 37)])
def test_adaptive_pool_uses_torch_bins_at_any_size(torch_runner, tf_runner, size):
    """Smaller than 7 (repeated bins), not a multiple of 7 (overlapping bins), larger than 7."""
    x = np.random.default_rng(3).standard_normal((2, 4, *size)).astype(np.float32)
    expected = _adaptive_pool_reference(x, (7, 7))
    for runner in (torch_runner, tf_runner):
        out = _forward(runner, "adaptive_pool", x)
        assert out.shape == (2, 4, 7, 7)
        np.testing.assert_allclose(out, expected, rtol=1e-6, atol=1e-6, err_msg=runner.framework)


def test_pixel_shuffle_channel_order_matches_torch_and_depth_to_space_does_not(torch_runner, tf_runner):
    x = np.random.default_rng(4).standard_normal((2, 8, 3, 5)).astype(np.float32)  # 2 output channels, r = 2
    reference = _forward(torch_runner, "pixel_shuffle", x, channels=8)
    assert reference.shape == (2, 2, 6, 10)
    np.testing.assert_array_equal(_forward(tf_runner, "pixel_shuffle", x, channels=8), reference)  # pure data movement
    assert not np.array_equal(_forward(tf_runner, "pixel_shuffle", x, channels=8, naive=True), reference)
    # with one output channel the two orders coincide (AECNN's decoder)
    single = x[:, :4]
    np.testing.assert_array_equal(_forward(tf_runner, "pixel_shuffle", single, channels=4, naive=True),
                                  _forward(torch_runner, "pixel_shuffle", single, channels=4))


def _clipped_relu_input_gradient(runner, x: np.ndarray, naive: bool = False) -> np.ndarray:
    model = _build(runner, "clipped_relu", channels=1, naive=naive)
    try:
        targets = np.full_like(x, -1.0)  # y - t > 0 everywhere, so only the mask can zero a gradient
        return runner.gradients(model, x, targets, loss="mse")[INPUT_GRADIENT]
    finally:
        runner.free(model)


def test_clipped_relu_passes_the_gradient_on_both_boundaries(torch_runner, tf_runner):
    """spec: the gradient flows where 0 <= x <= 1, ends included (torch's clamp).  Keras'
    ReLU(max_value=1) drops it at x = 0; the faithful twin must not."""
    values = np.array([-1.0, -1e-7, 0.0, 1e-7, 0.5, 1.0 - 1e-7, 1.0, 1.0 + 1e-7, 2.0], dtype=np.float32)
    x = np.tile(values, (2, 1, 2, 1))  # (2, 1, 2, 9): batch >= 2, H != W
    passes = (x >= 0) & (x <= 1)
    expected = np.where(passes, 2.0 * (np.clip(x, 0, 1) + 1.0) / x.size, 0.0)
    grads = {runner.framework: _clipped_relu_input_gradient(runner, x) for runner in (torch_runner, tf_runner)}
    for framework, grad in grads.items():
        np.testing.assert_array_equal(grad != 0, passes, err_msg=framework)
        np.testing.assert_allclose(grad, expected, rtol=1e-6, err_msg=framework)
    np.testing.assert_array_equal(grads["tf"], grads["torch"])
    naive = _clipped_relu_input_gradient(tf_runner, x, naive=True)
    assert (naive != grads["torch"]).any() and (naive[x == 0] == 0).all()
