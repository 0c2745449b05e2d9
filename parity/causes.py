"""The catalogue of known PyTorch <-> Keras differences, and the probable cause of a mismatch.

When a layer differs in float64 it is a semantic difference, not round-off.  For that layer the
float64 check holds its input(s), both twins' outputs, both twins' settings and its canonical
weights (:class:`LayerEvidence`; a BatchNorm's running statistics: :class:`StateEvidence`).  Each
catalogue entry that knows the reference's layer kind computes, in NumPy, what the layer gives
(the *sound* prediction, which must reproduce the reference: it proves the NumPy model right) and
what it gives with the difference applied; the entry names the cause when the candidate agrees
with the latter to 1e-10 of the reference's scale.  A candidate that already agrees is never
blamed, and a difference no entry reproduces gets no cause.

Arrays are canonical: torch's layout (channels at axis 1), float64.  Settings are the torch
module's public attributes and the Keras layer's ``get_config()``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Iterator

import numpy as np
from scipy.special import erf

AGREES = 1e-10  # max |a - b| against max(1, max |reference|): float64 round-off, with room


@dataclass(frozen=True)
class LayerEvidence:
    name: str
    reference_kind: str
    candidate_kind: str
    reference_config: dict
    candidate_config: dict
    inputs: list
    reference_output: np.ndarray
    candidate_output: np.ndarray
    weights: dict = field(default_factory=dict)


@dataclass(frozen=True)
class StateEvidence:
    """A BatchNorm's running statistics after one train-mode pass."""

    name: str
    reference_kind: str
    candidate_kind: str
    reference_config: dict
    candidate_config: dict
    batch_input: np.ndarray
    before: dict
    reference_after: dict
    candidate_after: dict


@dataclass(frozen=True)
class Cause:
    key: str
    title: str
    explanation: str
    fix: str
    agreement: float

    def __str__(self) -> str:
        return (f"probable cause: {self.title} (with it applied the layer agrees to {self.agreement:.1e}); "
                f"{self.explanation}; fix: {self.fix}")


# a variant: (what the layer gives with the difference, what each framework does, the fix)
Variant = tuple[np.ndarray, str, str]


@dataclass(frozen=True)
class Entry:
    key: str
    title: str
    reference_kinds: tuple[str, ...]
    sound: Callable[[LayerEvidence], np.ndarray]
    variants: Callable[[LayerEvidence], Iterator[Variant]]
    # how closely the candidate must follow the variant: float64 round-off, unless the candidate
    # framework's kernel is float32 inside whatever the model's dtype (TF's bilinear resize)
    agrees: float = AGREES


def distance(a: np.ndarray, b: np.ndarray, reference: np.ndarray) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        return math.inf
    return float(np.abs(a - b).max(initial=0.0)) / max(1.0, float(np.abs(reference).max(initial=0.0)))


def _pair(value, rank: int) -> tuple[int, ...]:
    return tuple(value) if isinstance(value, (list, tuple)) else (int(value),) * rank


# -- NumPy models of the layers ---------------------------------------------------------------

def batch_norm(x, weights, eps):
    shape = (1, -1) + (1,) * (x.ndim - 2)
    y = (x - weights["running_mean"].reshape(shape)) / np.sqrt(weights["running_var"].reshape(shape) + eps)
    if "weight" in weights:
        y = y * weights["weight"].reshape(shape)
    return y + weights["bias"].reshape(shape) if "bias" in weights else y


def layer_norm(x, weights, eps, axes):
    mean = x.mean(axis=axes, keepdims=True)
    y = (x - mean) / np.sqrt(x.var(axis=axes, keepdims=True) + eps)
    if "weight" in weights:
        y = y * weights["weight"]
    return y + weights["bias"] if "bias" in weights else y


def group_norm(x, weights, eps, groups):
    n, c = x.shape[:2]
    grouped = x.reshape(n, groups, -1)
    y = ((grouped - grouped.mean(-1, keepdims=True)) / np.sqrt(grouped.var(-1, keepdims=True) + eps)).reshape(x.shape)
    shape = (1, c) + (1,) * (x.ndim - 2)
    if "weight" in weights:
        y = y * weights["weight"].reshape(shape)
    return y + weights["bias"].reshape(shape) if "bias" in weights else y


def gelu(x, approximate: bool):
    if approximate:
        return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))
    return 0.5 * x * (1.0 + erf(x / math.sqrt(2.0)))


def convolve(x, weight, bias, stride, dilation, groups, padding):
    """Cross-correlation of (N, C, *spatial) with torch's (O, C/groups, *k); ``padding``: (before,
    after) per spatial axis, zeros."""
    rank = x.ndim - 2
    x = np.pad(x, [(0, 0), (0, 0), *padding])
    kernel = weight.shape[2:]
    out_sizes = [(x.shape[2 + a] - dilation[a] * (kernel[a] - 1) - 1) // stride[a] + 1 for a in range(rank)]
    n, c = x.shape[:2]
    o = weight.shape[0]
    per_group_in, per_group_out = c // groups, o // groups
    y = np.zeros((n, o, *out_sizes))
    for offset in np.ndindex(*kernel):
        window = x[(slice(None), slice(None)) + tuple(
            slice(offset[a] * dilation[a], offset[a] * dilation[a] + stride[a] * (out_sizes[a] - 1) + 1, stride[a])
            for a in range(rank))]
        for g in range(groups):
            taps = weight[g * per_group_out:(g + 1) * per_group_out, :, *offset]  # (O/g, C/g)
            part = window[:, g * per_group_in:(g + 1) * per_group_in]
            y[:, g * per_group_out:(g + 1) * per_group_out] += np.einsum("oc,nc...->no...", taps, part)
    if bias is not None:
        y += bias.reshape((1, -1) + (1,) * rank)
    return y


def same_padding(size: int, kernel: int, stride: int, dilation: int) -> tuple[int, int]:
    """TensorFlow's 'same': the total pad, the extra one at the end."""
    total = max((math.ceil(size / stride) - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


def pool(x, kernel, stride, padding, reducer: str, pad_value: float, count_pad: bool = True):
    rank = x.ndim - 2
    padded = np.pad(x, [(0, 0), (0, 0), *padding], constant_values=pad_value)
    inside = np.pad(np.ones(x.shape[2:]), list(padding))
    out_sizes = [(padded.shape[2 + a] - kernel[a]) // stride[a] + 1 for a in range(rank)]
    windows, counts = [], []
    for offset in np.ndindex(*kernel):
        index = tuple(slice(offset[a], offset[a] + stride[a] * (out_sizes[a] - 1) + 1, stride[a]) for a in range(rank))
        windows.append(padded[(slice(None), slice(None)) + index])
        counts.append(inside[index])
    stacked = np.stack(windows)
    if reducer == "max":
        return stacked.max(axis=0)
    total = stacked.sum(axis=0)
    return total / (np.prod(kernel) if count_pad else np.stack(counts).sum(axis=0))


def softmax(x, axis: int):
    shifted = np.exp(x - x.max(axis=axis, keepdims=True))
    return shifted / shifted.sum(axis=axis, keepdims=True)


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def gru(x, weights, swap_gates: bool = False, reset_after: bool = True):
    """torch's GRU (batch_first, one layer): gates (r, z, n), n = tanh(W_in x + b_in + r (W_hn h + b_hn))."""
    w_ih, w_hh, b_ih, b_hh = (weights[k] for k in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"))
    if swap_gates:
        w_ih, w_hh, b_ih, b_hh = (np.concatenate([a[len(a) // 3:2 * len(a) // 3], a[:len(a) // 3], a[2 * len(a) // 3:]])
                                  for a in (w_ih, w_hh, b_ih, b_hh))
    hidden = w_hh.shape[1]
    h, outputs = np.zeros((x.shape[0], hidden)), []
    for t in range(x.shape[1]):
        xi = x[:, t] @ w_ih.T + b_ih
        xr, xz, xn = np.split(xi, 3, axis=1)
        hr, hz, hn = np.split(h @ w_hh.T + b_hh, 3, axis=1)
        r, z = _sigmoid(xr + hr), _sigmoid(xz + hz)
        if reset_after:
            n = np.tanh(xn + r * hn)
        else:  # the reset gate before the recurrent product; both biases on the input side
            n = np.tanh(xn + np.split(b_hh, 3)[2] + (r * h) @ np.split(w_hh, 3)[2].T)
        h = (1.0 - z) * n + z * h
        outputs.append(h)
    return np.stack(outputs, axis=1)


def lstm(x, weights, bias=None):
    """torch's LSTM (batch_first, one layer): gates (i, f, g, o); ``bias`` replaces b_ih + b_hh."""
    w_ih, w_hh = weights["weight_ih_l0"], weights["weight_hh_l0"]
    bias = weights["bias_ih_l0"] + weights["bias_hh_l0"] if bias is None else bias
    hidden = w_hh.shape[1]
    h, c, outputs = np.zeros((x.shape[0], hidden)), np.zeros((x.shape[0], hidden)), []
    for t in range(x.shape[1]):
        i, f, g, o = np.split(x[:, t] @ w_ih.T + h @ w_hh.T + bias, 4, axis=1)
        c = _sigmoid(f) * c + _sigmoid(i) * np.tanh(g)
        h = _sigmoid(o) * np.tanh(c)
        outputs.append(h)
    return np.stack(outputs, axis=1)


def _source_index(out_size: int, in_size: int, align_corners: bool) -> np.ndarray:
    o = np.arange(out_size, dtype=np.float64)
    if align_corners:
        return o * ((in_size - 1) / (out_size - 1)) if out_size > 1 else np.zeros(1)
    return np.maximum((o + 0.5) * (in_size / out_size) - 0.5, 0.0)


def resize(x, out_size: tuple[int, int], mode: str, align_corners: bool = False):
    """torch's nearest and bilinear interpolation of (N, C, H, W)."""
    for axis, size in zip((2, 3), out_size):
        n_in = x.shape[axis]
        if mode == "nearest":
            x = np.take(x, np.minimum(np.floor(np.arange(size) * (n_in / size)).astype(int), n_in - 1), axis=axis)
            continue
        source = _source_index(size, n_in, align_corners)
        low = np.floor(source).astype(int)
        high = np.minimum(low + 1, n_in - 1)
        weight = (source - low).reshape([-1 if a == axis else 1 for a in range(x.ndim)])
        x = np.take(x, low, axis=axis) * (1 - weight) + np.take(x, high, axis=axis) * weight
    return x


# -- the entries --------------------------------------------------------------------------------

NORMS = ("BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "LayerNorm", "GroupNorm")
COMMON_EPSILONS = (1e-3, 1e-5, 1e-6, 1e-12)


def _norm(e: LayerEvidence, eps: float) -> np.ndarray:
    x, kind = e.inputs[0], e.reference_kind
    if kind == "LayerNorm":
        axes = tuple(range(x.ndim - len(_pair(e.reference_config.get("normalized_shape", 1), 1)), x.ndim))
        return layer_norm(x, e.weights, eps, axes)
    if kind == "GroupNorm":
        return group_norm(x, e.weights, eps, int(e.reference_config["num_groups"]))
    return batch_norm(x, e.weights, eps)


def _epsilons(e: LayerEvidence) -> Iterator[Variant]:
    ours = float(e.reference_config["eps"])
    theirs = e.candidate_config.get("epsilon")
    for eps in dict.fromkeys(([float(theirs)] if theirs is not None else []) + list(COMMON_EPSILONS)):
        if not math.isclose(eps, ours):
            yield (_norm(e, eps), f"torch uses eps={ours:g}, the Keras layer computes with epsilon={eps:g} "
                                  "(Keras' BatchNormalization and LayerNormalization default to 1e-3)",
                   f"Keras: {e.candidate_kind}(epsilon={ours:g}, ...)")


def _gelu_variants(e: LayerEvidence) -> Iterator[Variant]:
    exact = e.reference_config.get("approximate", "none") == "none"
    yield (gelu(e.inputs[0], approximate=exact),
           f"torch's GELU is the {'exact (erf)' if exact else 'tanh approximation'}, the Keras one the "
           f"{'tanh approximation' if exact else 'exact (erf)'}",
           f"Keras: keras.activations.gelu(x, approximate={not exact})" if exact else
           "Keras: keras.activations.gelu(x, approximate=True)")


def _conv_settings(e: LayerEvidence):
    rank = e.inputs[0].ndim - 2
    c = e.reference_config
    return (rank, _pair(c["kernel_size"], rank), _pair(c["stride"], rank), _pair(c["dilation"], rank),
            int(c.get("groups", 1)), c["padding"])


def _conv_sound(e: LayerEvidence) -> np.ndarray:
    rank, _, stride, dilation, groups, padding = _conv_settings(e)
    if isinstance(padding, str):
        raise ValueError("string padding")
    pads = [(p, p) for p in _pair(padding, rank)]
    return convolve(e.inputs[0], e.weights["weight"], e.weights.get("bias"), stride, dilation, groups, pads)


def _same_padding(e: LayerEvidence) -> Iterator[Variant]:
    rank, kernel, stride, dilation, groups, padding = _conv_settings(e)
    if max(stride) == 1:
        return
    pads = [same_padding(e.inputs[0].shape[2 + a], kernel[a], stride[a], dilation[a]) for a in range(rank)]
    yield (convolve(e.inputs[0], e.weights["weight"], e.weights.get("bias"), stride, dilation, groups, pads),
           f"torch pads {padding} on both sides; Keras' padding='same' at stride {max(stride)} pads "
           f"{pads} (before, after): the extra pad goes at the end",
           "Keras: ZeroPadding with torch's padding, then the conv with padding='valid'")


def _pool_settings(e: LayerEvidence):
    rank = e.inputs[0].ndim - 2
    c = e.reference_config
    kernel = _pair(c["kernel_size"], rank)
    return rank, kernel, _pair(c.get("stride") or kernel, rank), [(p, p) for p in _pair(c.get("padding", 0), rank)]


def _maxpool_sound(e: LayerEvidence) -> np.ndarray:
    _, kernel, stride, pads = _pool_settings(e)
    return pool(e.inputs[0], kernel, stride, pads, "max", -np.inf)


def _maxpool_zero(e: LayerEvidence) -> Iterator[Variant]:
    rank, kernel, stride, pads = _pool_settings(e)
    if any(p for p, _ in pads) and max(stride) > 1:
        same = [same_padding(e.inputs[0].shape[2 + a], kernel[a], stride[a], 1) for a in range(rank)]
        yield (pool(e.inputs[0], kernel, stride, same, "max", -np.inf),
               f"torch pads {[p for p, _ in pads]} on both sides; Keras' padding='same' at stride {max(stride)} pads "
               f"{same} (before, after)",
               "Keras: pad with -inf on both sides (keras.ops.pad(x, ..., constant_values=-inf)), then a 'valid' pool")
    if any(p for p, _ in pads):
        yield (pool(e.inputs[0], kernel, stride, pads, "max", 0.0),
               "torch's max-pool pads with -inf; the Keras twin pads with zeros before a 'valid' pool, "
               "which wins over negative values at the border",
               "Keras: MaxPooling2D(padding='same') where its padding is torch's, else pad with -inf "
               "(keras.ops.pad(x, ..., constant_values=-inf)) before a 'valid' pool")


def _avgpool_sound(e: LayerEvidence) -> np.ndarray:
    _, kernel, stride, pads = _pool_settings(e)
    return pool(e.inputs[0], kernel, stride, pads, "mean", 0.0, bool(e.reference_config.get("count_include_pad", True)))


def _avgpool_count(e: LayerEvidence) -> Iterator[Variant]:
    _, kernel, stride, pads = _pool_settings(e)
    counted = bool(e.reference_config.get("count_include_pad", True))
    if any(p for p, _ in pads):
        yield (pool(e.inputs[0], kernel, stride, pads, "mean", 0.0, not counted),
               f"torch's average pool {'counts' if counted else 'leaves out'} the padding in its divisor "
               f"(count_include_pad={counted}); the Keras pool {'does not' if counted else 'does'}",
               "Keras: ZeroPadding2D then AveragePooling2D(padding='valid') (padding counted)" if counted else
               "Keras: AveragePooling2D(padding='same') (padding not counted)")


def _flatten_sound(e: LayerEvidence) -> np.ndarray:
    x = e.inputs[0]
    return x.reshape(x.shape[0], -1)


def _flatten_channels_last(e: LayerEvidence) -> Iterator[Variant]:
    x = e.inputs[0]
    if x.ndim >= 3:
        yield (np.moveaxis(x, 1, -1).reshape(x.shape[0], -1),
               "torch flattens (C, H, W), Keras' Flatten of a channels-last map (H, W, C): the features "
               "reach the next Dense in another order",
               "Keras: Permute((3, 1, 2)) before Flatten() (or reorder the next Dense kernel's rows)")


def _dense_sound(e: LayerEvidence) -> np.ndarray:
    y = e.inputs[0] @ e.weights["weight"].T
    return y + e.weights["bias"] if "bias" in e.weights else y


def _dense_untransposed(e: LayerEvidence) -> Iterator[Variant]:
    w = e.weights["weight"]
    if w.shape[0] == w.shape[1]:
        y = e.inputs[0] @ w
        yield (y + e.weights["bias"] if "bias" in e.weights else y,
               "torch's Linear computes x W^T; the Keras kernel holds torch's (out, in) weight as it is, so "
               "it computes x W (a square kernel hides the missing transpose from the shapes)",
               "the Keras kernel is the transpose of torch's weight (mapping kind 'dense', "
               "parity.mappings.dense_kernel)")


def _softmax_sound(e: LayerEvidence) -> np.ndarray:
    return softmax(e.inputs[0], int(e.reference_config.get("dim", -1)) % e.inputs[0].ndim)


def _softmax_axes(e: LayerEvidence) -> Iterator[Variant]:
    x = e.inputs[0]
    ours = int(e.reference_config.get("dim", -1)) % x.ndim
    for axis in range(1, x.ndim):
        if axis != ours:
            yield (softmax(x, axis),
                   f"torch's softmax is over axis {ours} (canonical layout), the Keras one over axis {axis}",
                   "Keras: Softmax(axis=-1) for the channels of a channels-last map" if ours == 1 and x.ndim > 2
                   else f"Keras: the softmax axis that is torch's dim={ours}")


def _leaky_sound(e: LayerEvidence) -> np.ndarray:
    x = e.inputs[0]
    return np.where(x >= 0, x, x * float(e.reference_config.get("negative_slope", 0.01)))


def _leaky_slopes(e: LayerEvidence) -> Iterator[Variant]:
    x, y = e.inputs[0], e.candidate_output
    negative = x < -1e-6
    if not negative.any() or y.shape != x.shape:
        return
    slope = float(np.median(y[negative] / x[negative]))
    ours = float(e.reference_config.get("negative_slope", 0.01))
    if not math.isclose(slope, ours, rel_tol=1e-9):
        yield (np.where(x >= 0, x, x * slope),
               f"torch's LeakyReLU slope is {ours:g}, the Keras one {slope:g} (Keras' default is 0.3)",
               f"Keras: LeakyReLU(negative_slope={ours:g})")


def _gru_gates(e: LayerEvidence) -> Iterator[Variant]:
    yield (gru(e.inputs[0], e.weights, swap_gates=True),
           "torch orders a GRU's gates (r, z, n), Keras (z, r, h): the weights were copied without reordering",
           "reorder the gate blocks (the built-in GRU mapping does)")


def _gru_reset(e: LayerEvidence) -> Iterator[Variant]:
    yield (gru(e.inputs[0], e.weights, reset_after=False),
           "torch's GRU applies the reset gate after the recurrent product (reset_after=True); the Keras GRU "
           "has reset_after=False and applies it before",
           "Keras: GRU(..., reset_after=True) (Keras' default)")


def _lstm_biases(e: LayerEvidence) -> Iterator[Variant]:
    b_ih, b_hh = e.weights["bias_ih_l0"], e.weights["bias_hh_l0"]
    for bias, what in ((b_ih, "only bias_ih"), (b_hh, "only bias_hh"), (2 * b_ih, "bias_ih twice"),
                       (2 * b_hh, "bias_hh twice"), (2 * (b_ih + b_hh), "the sum twice")):
        yield (lstm(e.inputs[0], e.weights, bias),
               f"torch adds two biases (bias_ih + bias_hh); the Keras LSTM's one bias holds {what}",
               "the Keras bias is bias_ih + bias_hh (the built-in LSTM mapping)")


def _upsample_settings(e: LayerEvidence):
    c, x = e.reference_config, e.inputs[0]
    size = c.get("size")
    if size is None:
        factor = _pair(c.get("scale_factor", 1), 2)
        size = tuple(int(math.floor(x.shape[2 + a] * float(factor[a]))) for a in range(2))
    return tuple(_pair(size, 2)), c.get("mode", "nearest"), bool(c.get("align_corners") or False)


def _resize_sound(e: LayerEvidence) -> np.ndarray:
    size, mode, align = _upsample_settings(e)
    if mode not in ("nearest", "bilinear"):
        raise ValueError(mode)
    return resize(e.inputs[0], size, mode, align)


def _resize_modes(e: LayerEvidence) -> Iterator[Variant]:
    size, mode, align = _upsample_settings(e)
    ours = f"{mode}" + (f", align_corners={align}" if mode == "bilinear" else "")
    for other_mode, other_align in (("bilinear", False), ("bilinear", True), ("nearest", False)):
        if (other_mode, other_align) != (mode, align if mode == "bilinear" else False):
            theirs = other_mode + (f", align_corners={other_align}" if other_mode == "bilinear" else "")
            yield (resize(e.inputs[0], size, other_mode, other_align),
                   f"torch resizes {ours}, the Keras layer {theirs} (Keras' bilinear is torch's align_corners=False)",
                   "torch: Upsample(..., align_corners=False), which Keras' UpSampling2D(interpolation='bilinear') "
                   "matches" if align else f"Keras: UpSampling2D(interpolation='{mode}')")


CATALOGUE: tuple[Entry, ...] = (
    Entry("norm_epsilon", "normalisation epsilon", NORMS, lambda e: _norm(e, float(e.reference_config["eps"])),
          _epsilons),
    Entry("gelu_approximation", "GELU: erf vs tanh", ("GELU",),
          lambda e: gelu(e.inputs[0], e.reference_config.get("approximate", "none") != "none"), _gelu_variants),
    Entry("same_padding_asymmetry", "'same' padding at stride 2 is asymmetric", ("Conv1d", "Conv2d", "Conv3d"),
          _conv_sound, _same_padding),
    Entry("maxpool_padding_value", "max-pool padding value: -inf vs 0", ("MaxPool1d", "MaxPool2d", "MaxPool3d"),
          _maxpool_sound, _maxpool_zero),
    Entry("avgpool_count_include_pad", "average pool: padding in the divisor (count_include_pad)",
          ("AvgPool1d", "AvgPool2d", "AvgPool3d"), _avgpool_sound, _avgpool_count),
    Entry("flatten_order", "flatten order: (C, H, W) vs (H, W, C)", ("Flatten",), _flatten_sound, _flatten_channels_last),
    Entry("dense_kernel_transposed", "dense kernel not transposed", ("Linear",), _dense_sound, _dense_untransposed),
    Entry("softmax_axis", "softmax over another axis", ("Softmax",), _softmax_sound, _softmax_axes),
    Entry("leaky_relu_slope", "LeakyReLU slope", ("LeakyReLU",), _leaky_sound, _leaky_slopes),
    Entry("gru_gate_order", "GRU gate order: (r, z, n) vs (z, r, h)", ("GRU",), lambda e: gru(e.inputs[0], e.weights),
          _gru_gates),
    Entry("gru_reset_after", "GRU reset_after", ("GRU",), lambda e: gru(e.inputs[0], e.weights), _gru_reset),
    Entry("lstm_bias", "LSTM biases: torch's two vs Keras' one", ("LSTM",), lambda e: lstm(e.inputs[0], e.weights),
          _lstm_biases),
    Entry("resize_mode", "resize mode / align_corners", ("Upsample", "UpsamplingBilinear2d", "UpsamplingNearest2d"),
          _resize_sound, _resize_modes, agrees=1e-6),  # tf.image.resize answers float32 for bilinear
)
STATE_KEYS = ("bn_running_variance_biased", "bn_momentum_convention")


def explain_layer(evidence: LayerEvidence) -> Cause | None:
    """The first catalogued difference that reproduces the candidate, or None."""
    reference = evidence.reference_output
    if not evidence.inputs or distance(evidence.candidate_output, reference, reference) <= AGREES:
        return None  # nothing to explain
    for entry in CATALOGUE:
        if evidence.reference_kind not in entry.reference_kinds:
            continue
        try:
            if distance(entry.sound(evidence), reference, reference) > AGREES:
                continue  # the NumPy model does not reproduce this reference: say nothing
            for prediction, explanation, fix in entry.variants(evidence):
                agreement = distance(prediction, evidence.candidate_output, reference)
                if agreement <= entry.agrees:
                    return Cause(entry.key, entry.title, explanation, fix, agreement)
        except (KeyError, ValueError, TypeError, IndexError):  # settings this model does not cover
            continue
    return None


def explain_state(evidence: StateEvidence) -> Cause | None:
    """A BatchNorm's running statistics after a train step: torch's update (momentum m, unbiased
    variance) must reproduce the reference; then Keras' (new = k old + (1 - k) batch, with the
    biased variance, k the Keras momentum) the candidate."""
    m = evidence.reference_config.get("momentum", 0.1)
    k = evidence.candidate_config.get("momentum")
    if m is None or k is None:
        return None
    x = evidence.batch_input
    axes = tuple(a for a in range(x.ndim) if a != 1)
    count = x.size // x.shape[1]
    mean, var = x.mean(axis=axes), x.var(axis=axes)
    before = evidence.before
    sound = {"running_mean": (1 - m) * before["running_mean"] + m * mean,
             "running_var": (1 - m) * before["running_var"] + m * var * count / max(count - 1, 1)}
    keras = {"running_mean": k * before["running_mean"] + (1 - k) * mean,
             "running_var": k * before["running_var"] + (1 - k) * var}

    def far(prediction, actual) -> float:
        return max(distance(prediction[s], actual[s], evidence.reference_after[s]) for s in sound)

    if far(sound, evidence.reference_after) > AGREES or far(sound, evidence.candidate_after) <= AGREES:
        return None
    agreement = far(keras, evidence.candidate_after)
    if agreement > AGREES:
        return None
    if math.isclose(k, 1 - m, abs_tol=1e-12):
        return Cause("bn_running_variance_biased", "BatchNorm running variance: biased vs unbiased",
                     f"torch updates running_var with the unbiased batch variance (x n/(n-1), n = {count}), Keras' "
                     "BatchNormalization with the biased one; inference agrees, the statistics of a train step do not",
                     "stock Keras BatchNormalization has no option for it: accept it (known_differences="
                     "['bn_running_variance_biased'], --known-difference bn_running_variance_biased), or give the Keras "
                     "twin a BatchNormalization subclass that accumulates the unbiased variance", agreement)
    return Cause("bn_momentum_convention", "BatchNorm momentum convention",
                 f"torch's momentum {m:g} weighs the new batch, Keras' momentum {k:g} weighs the old value: Keras "
                 f"keeps {k:g} of the old statistics where torch keeps {1 - m:g} (and uses the biased variance)",
                 f"Keras: BatchNormalization(momentum={1 - m:g})", agreement)
