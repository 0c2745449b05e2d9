"""Layout conversions: round trips for random shapes, and the meaning of each permutation."""

import numpy as np
from hypothesis import given, settings, strategies as st
from hypothesis.extra import numpy as hnp

from canon import layout

dims = st.integers(1, 5)
floats = st.floats(-1e3, 1e3, width=32)


def arrays(rank):
    return hnp.arrays(np.float32, hnp.array_shapes(min_dims=rank, max_dims=rank, min_side=1, max_side=5), elements=floats)


@given(arrays(4))
def test_conv_round_trip_is_bit_exact(w):
    assert np.array_equal(layout.from_keras("conv2d", layout.to_keras("conv2d", w)), w)


@given(arrays(4))
def test_conv_transpose_round_trip_is_bit_exact(w):
    assert np.array_equal(layout.from_keras("conv2d_transpose", layout.to_keras("conv2d_transpose", w)), w)


@given(arrays(2))
def test_dense_round_trip_is_bit_exact(w):
    assert np.array_equal(layout.from_keras("dense", layout.to_keras("dense", w)), w)


@given(st.integers(1, 4), st.integers(1, 3), dims, dims)
def test_depthwise_round_trip(channels, multiplier, kh, kw):
    """torch's output channel c*M + m is Keras' (c, m): the mapping of DepthwiseConv2D."""
    from parity.mappings import depthwise_rule

    w = np.random.default_rng(0).standard_normal((channels * multiplier, 1, kh, kw)).astype(np.float32)
    rule = depthwise_rule("weight", "kernel", (kh, kw, channels, multiplier))
    (k,) = rule.to_keras(w)
    assert k.shape == (kh, kw, channels, multiplier)
    assert np.array_equal(k[:, :, 1 % channels, 0], w[(1 % channels) * multiplier, 0])
    (back,) = rule.from_keras(k)
    assert np.array_equal(back, w)


@given(hnp.arrays(np.float32, hnp.array_shapes(min_dims=1, max_dims=5, max_side=4), elements=floats))
def test_activation_round_trip(x):
    assert np.array_equal(layout.channels_first(layout.channels_last(x)), x)


def test_conv_kernel_means_the_same_convolution():
    """A 1x1 conv: torch y[o] = sum_i w[o,i] x[i]; keras y[o] = sum_i k[0,0,i,o] x[i]."""
    w = np.arange(6, dtype=np.float32).reshape(3, 2, 1, 1)  # out 3, in 2
    k = layout.to_keras("conv2d", w)
    assert k.shape == (1, 1, 2, 3)
    x = np.array([1.0, 10.0], dtype=np.float32)
    assert np.array_equal(w[:, :, 0, 0] @ x, x @ k[0, 0])


def test_channels_last_moves_the_channel_axis():
    x = np.zeros((2, 3, 4, 5))
    assert layout.channels_last(x).shape == (2, 4, 5, 3)
    assert layout.channels_first(np.zeros((2, 4, 5, 3))).shape == (2, 3, 4, 5)
    assert layout.channels_last(np.zeros((2, 7))).shape == (2, 7)


@settings(max_examples=25)
@given(st.integers(1, 4), st.integers(1, 4), st.integers(1, 4), st.integers(1, 3))
def test_flatten_row_permutation_makes_dense_after_flatten_agree(c, h, w, out):
    rng = np.random.default_rng(c * 100 + h * 10 + w)
    x = rng.standard_normal((c, h, w))
    weight = rng.standard_normal((out, c * h * w))  # torch Linear after a channel-first flatten
    kernel = layout.to_keras("dense", weight)[layout.flatten_row_permutation(c, h, w)]
    np.testing.assert_allclose(x.transpose(1, 2, 0).ravel() @ kernel, weight @ x.ravel(), rtol=1e-12)


def test_wrong_rank_and_unknown_kind_are_named():
    import pytest

    with pytest.raises(ValueError, match="rank-4"):
        layout.to_keras("conv2d", np.zeros((3, 3)))
    with pytest.raises(ValueError, match="unknown weight layout 'conv3d'"):
        layout.to_keras("conv3d", np.zeros((3, 3)))
