"""Layout conversions between the canonical (PyTorch) layout and Keras' layout.

Canonical weights use PyTorch layouts (conv OIHW, conv-transpose IOHW, dense (out, in));
canonical activations are channel-first (NCHW).  Every conversion here is a pure
axis permutation, so each pair round-trips bit-exactly.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

Conversion = Callable[[np.ndarray], np.ndarray]


def _permute(axes: tuple[int, ...]) -> Conversion:
    def convert(array: np.ndarray) -> np.ndarray:
        array = np.asarray(array)
        if array.ndim != len(axes):
            raise ValueError(f"expected a rank-{len(axes)} array, got shape {array.shape}")
        return np.ascontiguousarray(np.transpose(array, axes))

    return convert


def _identity(array: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(array)


# kind -> (canonical -> keras, keras -> canonical)
WEIGHT_LAYOUTS: dict[str, tuple[Conversion, Conversion]] = {
    "identity": (_identity, _identity),
    # torch (out, in, kh, kw) <-> keras (kh, kw, in, out)
    "conv2d": (_permute((2, 3, 1, 0)), _permute((3, 2, 0, 1))),
    # torch (in, out, kh, kw) <-> keras (kh, kw, out, in): the same permutation
    "conv2d_transpose": (_permute((2, 3, 1, 0)), _permute((3, 2, 0, 1))),
    # torch (out, in) <-> keras (in, out)
    "dense": (_permute((1, 0)), _permute((1, 0))),
}


def to_keras(kind: str, array: np.ndarray) -> np.ndarray:
    return _layout(kind)[0](array)


def from_keras(kind: str, array: np.ndarray) -> np.ndarray:
    return _layout(kind)[1](array)


def _layout(kind: str) -> tuple[Conversion, Conversion]:
    try:
        return WEIGHT_LAYOUTS[kind]
    except KeyError:
        raise ValueError(f"unknown weight layout {kind!r}; known: {sorted(WEIGHT_LAYOUTS)}") from None


def channels_last(array: np.ndarray) -> np.ndarray:
    """NC... -> N...C for rank >= 3; lower ranks are returned unchanged."""
    array = np.asarray(array)
    if array.ndim < 3:
        return array
    return np.ascontiguousarray(np.moveaxis(array, 1, -1))


def channels_first(array: np.ndarray) -> np.ndarray:
    """N...C -> NC... for rank >= 3; lower ranks are returned unchanged."""
    array = np.asarray(array)
    if array.ndim < 3:
        return array
    return np.ascontiguousarray(np.moveaxis(array, -1, 1))


def flatten_row_permutation(channels: int, height: int, width: int) -> np.ndarray:
    """Index map from channel-last flatten order to channel-first flatten order.

    A Dense layer after Flatten sees features in (H, W, C) order in Keras and
    (C, H, W) order in torch: ``keras_kernel = dense_to_keras(w)[perm]``.
    """
    return np.arange(channels * height * width).reshape(channels, height, width).transpose(1, 2, 0).ravel()


# -- activation layouts --------------------------------------------------------------------
# What a tensor's axes mean, declared for each model input and output and ruled for each layer
# kind.  "channels": Keras holds it channels-last (N, ..., C), torch channels-first (N, C, ...);
# "plain": both hold the same axes (token ids, (batch, sequence, features), (batch, features)).
CHANNELS, PLAIN = "channels", "plain"
# the names a user declares, with the rank each implies (None: any rank)
LAYOUTS: dict[str, tuple[str, int | None]] = {
    "image": (CHANNELS, 4),     # NCHW <-> NHWC
    "signal": (CHANNELS, 3),    # NCL <-> NLC
    "volume": (CHANNELS, 5),    # NCDHW <-> NDHWC
    "channels": (CHANNELS, None),
    "sequence": (PLAIN, None),  # (batch, sequence[, features]): no transpose
    "plain": (PLAIN, None),
}


def activation_layout(declared: str, shape: tuple[int, ...] | None = None) -> str:
    """The conversion (CHANNELS or PLAIN) of a declared layout, its rank checked against ``shape``."""
    try:
        conversion, rank = LAYOUTS[declared]
    except KeyError:
        raise ValueError(f"unknown layout {declared!r}; known: {', '.join(LAYOUTS)}") from None
    if shape is not None and rank is not None and len(shape) != rank:
        raise ValueError(f"layout {declared!r} is rank {rank}, got an array of shape {tuple(shape)}")
    return conversion


def to_canonical(array: np.ndarray, conversion: str) -> np.ndarray:
    """A Keras activation in canonical (torch) axis order."""
    return channels_first(array) if conversion == CHANNELS else np.asarray(array)


def from_canonical(array: np.ndarray, conversion: str) -> np.ndarray:
    """A canonical activation in Keras' axis order."""
    return channels_last(array) if conversion == CHANNELS else np.asarray(array)
