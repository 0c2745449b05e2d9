"""What the mapping fuzzer draws: one layer configuration and its input, per Keras layer kind of
the mapping registry, and the configurations where the two frameworks are known to disagree.

Framework-free: a :class:`LayerCase` is data (the Keras class name, a JSON config, the inputs);
``parity/fuzz/torch_layers.py`` and ``parity/fuzz/keras_layers.py`` build its two twins from it.

A config holds the Keras layer's options and, where torch offers options Keras has not
(``ceil_mode``, ``count_include_pad``, a conv's ``padding_mode``, ``align_corners``, a GRU's
``reset_after=False`` cell), the torch side's choice.  The torch twin follows Keras' semantics
exactly unless such an option says otherwise; every configuration in which that option makes
the frameworks disagree is a :data:`KNOWN_DIFFERENCES` entry (docs/pitfalls.md, with its
minimal example), which the strategies draw and then set aside explicitly: the fuzz report
counts each one.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Callable

from hypothesis import strategies as st

from canon.inputs import InputSpec

RANK_LAYOUTS = {1: "signal", 2: "image", 3: "volume"}
CHANNEL_LAYOUTS = frozenset(RANK_LAYOUTS.values())  # channels first in torch, last in Keras


def rank_of(kind: str) -> int:
    """The spatial rank a Keras class name carries (Conv2DTranspose: 2); 0 where it has none."""
    found = re.search(r"([123])D", kind)
    return int(found.group(1)) if found else 0


@dataclass(frozen=True)
class LayerCase:
    """One drawn configuration: ``kind`` is the Keras class name (the registry's key)."""

    kind: str
    config: dict
    inputs: tuple[InputSpec, ...]

    def to_dict(self) -> dict:
        return {"kind": self.kind, "config": self.config,
                "inputs": [{"shape": list(s.shape), "dtype": s.dtype, "layout": s.layout,
                            **({"value_range": list(s.value_range)} if s.value_range else {})} for s in self.inputs]}


@dataclass(frozen=True)
class KnownDifference:
    """A region of the configuration space where the frameworks cannot agree."""

    key: str
    kinds: tuple[str, ...]
    applies: Callable[[LayerCase], bool]
    text: str
    pitfall: int  # its section in docs/pitfalls.md, with the minimal example `make fuzz` found


# -- TensorFlow's 'same' padding ----------------------------------------------------------

def same_pads(size: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """(before, after) of TensorFlow's 'same': ceil(size / stride) outputs, the odd one after."""
    outputs = -(-size // stride)
    total = max((outputs - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


def transposed_crop(size: int, kernel: int, stride: int, padding: str) -> tuple[int, int]:
    """A transposed conv's (crop before, output length) within torch's full output
    ((size - 1) * stride + kernel, plus ``max(stride - kernel, 0)`` of output padding): Keras'
    output is size * stride ('same') or size * stride + max(kernel - stride, 0) ('valid')."""
    if padding == "valid":
        return 0, size * stride + max(kernel - stride, 0)
    return max(kernel - stride, 0) // 2, size * stride


def spatial(case: LayerCase) -> list[int]:
    """The first input's spatial sizes (canonical: after batch and channels)."""
    return list(case.inputs[0].shape[2:])


# -- drawing helpers ----------------------------------------------------------------------

def _per_dim(rank: int, low: int, high: int) -> st.SearchStrategy:
    return st.lists(st.integers(low, high), min_size=rank, max_size=rank)


def _sizes(draw, minimums: list[int], spread: int = 4) -> list[int]:
    """Spatial sizes at least ``minimums``; two or more dims are never all equal (a square
    input hides transpositions)."""
    sizes = [draw(st.integers(m, m + spread)) for m in minimums]
    if len(sizes) > 1 and len(set(sizes)) == 1:
        sizes[-1] += 1
    return sizes


def _epsilon(draw) -> float:
    return draw(st.sampled_from([1e-5, 1e-3, 0.1]) | st.floats(1e-6, 0.5))


def _image(batch: int, channels: int, sizes: list[int]) -> InputSpec:
    return InputSpec((batch, channels, *sizes), layout=RANK_LAYOUTS[len(sizes)])


# -- the strategies, one per Keras layer family ----------------------------------------------

@st.composite
def conv(draw, kind: str, rank: int) -> LayerCase:
    groups = draw(st.integers(1, 3))
    channels, filters = groups * draw(st.integers(1, 2)), groups * draw(st.integers(1, 3))
    kernel = draw(_per_dim(rank, 1, 4))
    strided = draw(st.booleans())  # Keras refuses strides > 1 together with dilation > 1
    strides = draw(_per_dim(rank, 1, 3)) if strided else [1] * rank
    dilation = [1] * rank if strided else draw(_per_dim(rank, 1, 3))
    padding = draw(st.sampled_from(["valid", "same"]))
    # torch's way to 'same': TensorFlow's pads with F.pad, or its own symmetric padding (and a mode)
    torch_padding = draw(st.sampled_from(["tf_same", "symmetric"])) if padding == "same" else "none"
    padding_mode = draw(st.sampled_from(["zeros", "zeros", "reflect", "replicate", "circular"])) \
        if torch_padding == "symmetric" else "zeros"
    effective = [(k - 1) * d + 1 for k, d in zip(kernel, dilation)]
    sizes = _sizes(draw, [max(e, 2) for e in effective])
    config = dict(filters=filters, kernel_size=kernel, strides=strides, dilation_rate=dilation, padding=padding,
                  groups=groups, use_bias=draw(st.booleans()), torch_padding=torch_padding, padding_mode=padding_mode)
    return LayerCase(kind, config, (_image(2, channels, sizes),))


@st.composite
def conv_transpose(draw, kind: str, rank: int) -> LayerCase:
    kernel, strides = draw(_per_dim(rank, 1, 4)), draw(_per_dim(rank, 1, 3))
    config = dict(filters=draw(st.integers(1, 4)), kernel_size=kernel, strides=strides,
                  padding=draw(st.sampled_from(["valid", "same"])), use_bias=draw(st.booleans()))
    sizes = _sizes(draw, [1] * rank, 3)
    return LayerCase(kind, config, (_image(2, draw(st.integers(1, 4)), sizes),))


@st.composite
def depthwise(draw, kind: str, rank: int, separable: bool = False) -> LayerCase:
    kernel = draw(_per_dim(rank, 1, 4))
    strided = draw(st.booleans())
    strides = draw(_per_dim(rank, 1, 3)) if strided else [1] * rank
    dilation = [1] * rank if strided else draw(_per_dim(rank, 1, 3))
    effective = [(k - 1) * d + 1 for k, d in zip(kernel, dilation)]
    config = dict(kernel_size=kernel, strides=strides, dilation_rate=dilation, depth_multiplier=draw(st.integers(1, 3)),
                  padding=draw(st.sampled_from(["valid", "same"])), use_bias=draw(st.booleans()))
    if separable:
        config["filters"] = draw(st.integers(1, 5))
    sizes = _sizes(draw, [max(e, 2) for e in effective])
    return LayerCase(kind, config, (_image(2, draw(st.integers(1, 4)), sizes),))


@st.composite
def dense(draw, kind: str) -> LayerCase:
    leading = draw(st.lists(st.integers(1, 4), min_size=0, max_size=2))
    shape = (2, *leading, draw(st.integers(1, 6)))
    return LayerCase(kind, dict(units=draw(st.integers(1, 6)), use_bias=draw(st.booleans())),
                     (InputSpec(shape, layout="plain"),))


@st.composite
def batch_norm(draw, kind: str) -> LayerCase:
    rank = draw(st.integers(0, 3))  # BatchNorm1d on (N, C), then 1d/2d/3d on maps
    channels = draw(st.integers(1, 5))
    sizes = _sizes(draw, [1] * rank, 3) if rank else []
    inputs = _image(3, channels, sizes) if rank else InputSpec((4, channels), layout="plain")
    config = dict(epsilon=_epsilon(draw), momentum=draw(st.floats(0.01, 0.99)), affine=draw(st.booleans()))
    return LayerCase(kind, config, (inputs,))


@st.composite
def layer_norm(draw, kind: str) -> LayerCase:
    # one feature normalises to exactly 0: nothing to compare
    shape = (2, *draw(st.lists(st.integers(1, 4), min_size=0, max_size=1)), draw(st.integers(2, 6)))
    scale, center = draw(st.sampled_from([(True, True), (True, False), (False, False)]))
    config = dict(epsilon=_epsilon(draw), scale=scale, center=center)
    return LayerCase(kind, config, (InputSpec(shape, layout="plain" if len(shape) == 2 else "sequence"),))


@st.composite
def group_norm(draw, kind: str) -> LayerCase:
    groups, per_group = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    rank = draw(st.integers(1, 2))
    config = dict(groups=groups, epsilon=_epsilon(draw), affine=draw(st.booleans()))
    # a group of one element normalises to exactly 0: nothing to compare
    sizes = _sizes(draw, [2 if per_group == 1 else 1] + [1] * (rank - 1), 3)
    return LayerCase(kind, config, (_image(2, groups * per_group, sizes),))


@st.composite
def rms_norm(draw, kind: str) -> LayerCase:
    shape = (2, *draw(st.lists(st.integers(1, 4), min_size=0, max_size=1)), draw(st.integers(1, 6)))
    return LayerCase(kind, dict(epsilon=_epsilon(draw)),
                     (InputSpec(shape, layout="plain" if len(shape) == 2 else "sequence"),))


@st.composite
def embedding(draw, kind: str) -> LayerCase:
    vocabulary = draw(st.integers(2, 12))
    return LayerCase(kind, dict(input_dim=vocabulary, output_dim=draw(st.integers(1, 6))),
                     (InputSpec((2, draw(st.integers(1, 6))), dtype="int64", layout="sequence",
                                value_range=(0, vocabulary)),))


@st.composite
def attention(draw, kind: str) -> LayerCase:
    heads, key_dim = draw(st.integers(1, 3)), draw(st.integers(1, 4))
    width, cross = heads * key_dim, draw(st.booleans())
    inputs = [InputSpec((2, draw(st.integers(1, 5)), width), layout="sequence")]
    if cross:  # the query attends to another sequence (its key and value)
        inputs.append(InputSpec((2, draw(st.integers(1, 5)), width), layout="sequence"))
    return LayerCase(kind, dict(num_heads=heads, key_dim=key_dim, use_bias=draw(st.booleans())), tuple(inputs))


def _cell_config(draw, cell: str) -> dict:
    config = dict(cell=cell, units=draw(st.integers(1, 5)), return_sequences=draw(st.booleans()),
                  use_bias=draw(st.booleans()))
    if cell == "GRU":
        config["reset_after"] = draw(st.booleans())
    if cell == "SimpleRNN":
        config["activation"] = draw(st.sampled_from(["tanh", "relu"]))
    return config


@st.composite
def recurrent(draw, kind: str) -> LayerCase:
    cell = draw(st.sampled_from(["LSTM", "GRU", "SimpleRNN"])) if kind == "Bidirectional" else kind
    shape = (2, draw(st.integers(1, 5)), draw(st.integers(1, 5)))
    return LayerCase(kind, _cell_config(draw, cell), (InputSpec(shape, layout="sequence"),))


@st.composite
def prelu(draw, kind: str) -> LayerCase:
    rank, channels = draw(st.integers(0, 2)), draw(st.integers(1, 5))
    inputs = _image(2, channels, _sizes(draw, [1] * rank, 3)) if rank else InputSpec((2, channels), layout="plain")
    return LayerCase(kind, dict(per_channel=draw(st.booleans())), (inputs,))


@st.composite
def pooling(draw, kind: str, rank: int) -> LayerCase:
    pool = draw(_per_dim(rank, 1, 3))
    strides = draw(st.none() | _per_dim(rank, 1, 3))
    padding = draw(st.sampled_from(["valid", "same"]))
    config = dict(pool_size=pool, strides=strides, padding=padding,
                  # torch's way to 'same': TensorFlow's pads, or its own symmetric padding=pool//2
                  torch_padding=draw(st.sampled_from(["tf_same", "symmetric"])) if padding == "same" else "none",
                  ceil_mode=draw(st.booleans()) if padding == "valid" else False)
    if kind.startswith("Average") and config["torch_padding"] == "symmetric":
        config["count_include_pad"] = draw(st.booleans())
    return LayerCase(kind, config, (_image(2, draw(st.integers(1, 3)), _sizes(draw, pool)),))


@st.composite
def global_pooling(draw, kind: str, rank: int) -> LayerCase:
    sizes = _sizes(draw, [1] * rank, 3)
    return LayerCase(kind, dict(keepdims=draw(st.booleans())), (_image(2, draw(st.integers(1, 4)), sizes),))


@st.composite
def upsampling(draw, kind: str, rank: int) -> LayerCase:
    config = dict(size=draw(_per_dim(rank, 1, 3)))
    if rank == 2:
        config["interpolation"] = draw(st.sampled_from(["nearest", "bilinear"]))
        config["align_corners"] = draw(st.booleans()) if config["interpolation"] == "bilinear" else False
    return LayerCase(kind, config, (_image(2, draw(st.integers(1, 3)), _sizes(draw, [1] * rank, 3)),))


@st.composite
def resizing(draw, kind: str) -> LayerCase:
    mode = draw(st.sampled_from(["nearest", "nearest-exact", "bilinear", "bicubic"]))
    smooth = mode in ("bilinear", "bicubic")
    config = dict(height=draw(st.integers(1, 9)), width=draw(st.integers(1, 9)), torch_mode=mode,
                  antialias=draw(st.booleans()) if smooth else False,
                  align_corners=draw(st.booleans()) if smooth else False)
    return LayerCase(kind, config, (_image(2, draw(st.integers(1, 3)), _sizes(draw, [2, 2], 6)),))


@st.composite
def zero_padding(draw, kind: str, rank: int) -> LayerCase:
    pads = [draw(st.lists(st.integers(0, 2), min_size=2, max_size=2)) for _ in range(rank)]
    return LayerCase(kind, dict(padding=pads), (_image(2, draw(st.integers(1, 3)), _sizes(draw, [1] * rank, 3)),))


@st.composite
def cropping(draw, kind: str, rank: int) -> LayerCase:
    crops = [draw(st.lists(st.integers(0, 2), min_size=2, max_size=2)) for _ in range(rank)]
    sizes = _sizes(draw, [sum(c) + 1 for c in crops], 3)
    return LayerCase(kind, dict(cropping=crops), (_image(2, draw(st.integers(1, 3)), sizes),))


@st.composite
def dropout(draw, kind: str, rank: int = 0) -> LayerCase:
    """Random in training, the identity in inference: the gradients pass runs them switched off."""
    channels = draw(st.integers(1, 4))
    inputs = _image(2, channels, _sizes(draw, [1] * rank, 3)) if rank else \
        InputSpec((2, draw(st.integers(1, 4)), channels), layout="sequence")
    option = "stddev" if kind == "GaussianNoise" else "rate"
    return LayerCase(kind, {option: draw(st.floats(0.05, 0.9))}, (inputs,))


def _any_layout(draw, low: int = 1) -> InputSpec:
    rank = draw(st.integers(0, 2))
    if rank == 0:
        return InputSpec((2, draw(st.integers(1, 4)), draw(st.integers(low, 5))), layout="sequence")
    return _image(2, draw(st.integers(low, 4)), _sizes(draw, [1] * rank, 3))


@st.composite
def flatten(draw, kind: str) -> LayerCase:
    rank = draw(st.integers(1, 3))
    inputs = _image(2, draw(st.integers(1, 3)), _sizes(draw, [1] * rank, 3))
    # torch flattens channels first; the twin that follows Keras moves the channels last first
    return LayerCase(kind, dict(torch_order=draw(st.sampled_from(["channels_last", "channels_first"]))), (inputs,))


ACTIVATIONS = ("relu", "sigmoid", "tanh", "gelu", "silu", "softplus", "softsign", "elu", "selu", "relu6",
               "hard_sigmoid", "hard_silu", "mish", "linear", "exponential", "log_softmax", "leaky_relu")


@st.composite
def activation(draw, kind: str) -> LayerCase:
    name = draw(st.sampled_from(ACTIVATIONS))
    config = dict(activation=name)
    if name == "gelu":
        config["approximate"] = draw(st.sampled_from(["none", "tanh"]))  # torch's GELU(approximate=)
    if name == "leaky_relu":
        config["torch_slope"] = draw(st.sampled_from([0.2, 0.01]))  # Keras' activation is 0.2, torch's default 0.01
    return LayerCase(kind, config, (_any_layout(draw),))


@st.composite
def relu(draw, kind: str) -> LayerCase:
    variant = draw(st.sampled_from(["plain", "max", "slope", "threshold"]))
    config = dict(max_value=None, negative_slope=0.0, threshold=0.0)
    if variant == "max":
        config["max_value"] = draw(st.floats(0.1, 6.0))
    elif variant == "slope":
        config["negative_slope"] = draw(st.floats(0.01, 0.9))
    elif variant == "threshold":
        config["threshold"] = draw(st.floats(0.0, 1.0))  # Keras refuses a negative one
    return LayerCase(kind, config, (_any_layout(draw),))


@st.composite
def slope(draw, kind: str) -> LayerCase:
    option = "negative_slope" if kind == "LeakyReLU" else "alpha"
    return LayerCase(kind, {option: draw(st.floats(0.01, 2.0))}, (_any_layout(draw),))


@st.composite
def softmax(draw, kind: str) -> LayerCase:
    inputs = _any_layout(draw)
    return LayerCase(kind, dict(dim=draw(st.integers(1, len(inputs.shape) - 1))), (inputs,))


@st.composite
def merge(draw, kind: str) -> LayerCase:
    first = _any_layout(draw)
    second = InputSpec(first.shape, layout=first.layout)
    config = dict(dim=draw(st.integers(1, len(first.shape) - 1))) if kind == "Concatenate" else {}
    if kind == "Concatenate":  # the two inputs may differ along the joined axis
        shape = list(first.shape)
        shape[config["dim"]] = draw(st.integers(1, 3))
        second = InputSpec(tuple(shape), layout=first.layout)
    return LayerCase(kind, config, (first, second))


@st.composite
def elementwise(draw, kind: str) -> LayerCase:
    config = {}
    if kind == "Rescaling":
        config = dict(scale=draw(st.floats(-3.0, 3.0)), offset=draw(st.floats(-2.0, 2.0)))
    if kind == "ActivityRegularization":
        config = dict(l1=draw(st.sampled_from([0.0, 0.01])), l2=draw(st.sampled_from([0.0, 0.1])))
    return LayerCase(kind, config, (_any_layout(draw),))


def _family(strategy, *args) -> Callable[[str], st.SearchStrategy]:
    return lambda kind: strategy(kind, *args)


FAMILIES: dict[str, Callable[[str], st.SearchStrategy]] = {
    **{f"Conv{r}D": _family(conv, r) for r in (1, 2, 3)},
    **{f"Conv{r}DTranspose": _family(conv_transpose, r) for r in (1, 2, 3)},
    **{f"DepthwiseConv{r}D": _family(depthwise, r) for r in (1, 2)},
    **{f"SeparableConv{r}D": _family(depthwise, r, True) for r in (1, 2)},
    "Dense": dense, "BatchNormalization": batch_norm, "LayerNormalization": layer_norm,
    "GroupNormalization": group_norm, "RMSNormalization": rms_norm, "Embedding": embedding,
    "MultiHeadAttention": attention, "LSTM": recurrent, "GRU": recurrent, "SimpleRNN": recurrent,
    "Bidirectional": recurrent, "PReLU": prelu,
    **{f"{pool}Pooling{r}D": _family(pooling, r) for pool in ("Max", "Average") for r in (1, 2, 3)},
    **{f"Global{pool}Pooling{r}D": _family(global_pooling, r) for pool in ("Max", "Average") for r in (1, 2, 3)},
    **{f"UpSampling{r}D": _family(upsampling, r) for r in (1, 2, 3)},
    **{f"ZeroPadding{r}D": _family(zero_padding, r) for r in (1, 2, 3)},
    **{f"Cropping{r}D": _family(cropping, r) for r in (1, 2, 3)},
    **{f"SpatialDropout{r}D": _family(dropout, r) for r in (1, 2, 3)},
    "Resizing": resizing, "Flatten": flatten, "Activation": activation, "ReLU": relu, "LeakyReLU": slope,
    "ELU": slope, "Softmax": softmax,
    **{name: merge for name in ("Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum", "Concatenate")},
    **{name: dropout for name in ("Dropout", "GaussianNoise", "GaussianDropout", "AlphaDropout")},
    **{name: elementwise for name in ("Identity", "Rescaling", "ActivityRegularization")},
}
KINDS = tuple(FAMILIES)


def cases(kind: str) -> st.SearchStrategy:
    """Every configuration of ``kind`` the fuzzer draws, known differences included."""
    return FAMILIES[kind](kind)


# -- the known differences ------------------------------------------------------------------

def _pool_window(config: dict, index: int) -> tuple[int, int]:
    strides = config.get("strides") or config["pool_size"]
    return config["pool_size"][index], strides[index]


def _symmetric_same_differs(case: LayerCase) -> bool:
    config = case.config
    if config.get("torch_padding") != "symmetric":
        return False
    for i, size in enumerate(spatial(case)):
        if "kernel_size" in config:
            kernel, stride, dilation = config["kernel_size"][i], config["strides"][i], config["dilation_rate"][i]
            symmetric = (kernel - 1) * dilation // 2
        else:
            (kernel, stride), dilation = _pool_window(config, i), 1
            symmetric = kernel // 2
        if same_pads(size, kernel, stride, dilation) != (symmetric, symmetric):
            return True
    return False


def _any_padding(case: LayerCase) -> bool:
    return any(same_pads(size, k, s, d) != (0, 0) for size, k, s, d in
               zip(spatial(case), case.config["kernel_size"], case.config["strides"],
                   case.config["dilation_rate"]))


def ceil_mode_outputs(size: int, pool: int, stride: int) -> int:
    """torch's window count with ceil_mode=True: one more for a partial last window, unless that
    window would start past the input."""
    outputs = -(-(size - pool) // stride) + 1
    return outputs - 1 if (outputs - 1) * stride >= size else outputs


def _ceil_mode_differs(case: LayerCase) -> bool:
    config = case.config
    return bool(config.get("ceil_mode")) and any(
        ceil_mode_outputs(size, *_pool_window(config, i)) != (size - _pool_window(config, i)[0]) // _pool_window(config, i)[1] + 1
        for i, size in enumerate(spatial(case)))


def _count_include_pad_differs(case: LayerCase) -> bool:
    config = case.config
    return bool(config.get("count_include_pad")) and any(k // 2 for k in config["pool_size"])


def _resize_sizes(case: LayerCase) -> list[tuple[int, int]]:
    return list(zip(spatial(case), (case.config["height"], case.config["width"])))


def _legacy_nearest_differs(case: LayerCase) -> bool:
    return case.config["torch_mode"] == "nearest" and any(out % size for size, out in _resize_sizes(case))


def _align_corners_differs(case: LayerCase) -> bool:
    config = case.config
    if not config.get("align_corners"):
        return False
    if case.kind == "UpSampling2D":
        return any(s > 1 for s in config["size"])
    return any(size != out for size, out in _resize_sizes(case))


def _flatten_order_differs(case: LayerCase) -> bool:
    shape = case.inputs[0].shape
    return case.config["torch_order"] == "channels_first" and shape[1] > 1 and math.prod(shape[2:]) > 1


KNOWN_DIFFERENCES: tuple[KnownDifference, ...] = (
    KnownDifference("same_padding_symmetric", tuple(k for k in KINDS if k.startswith(("Conv", "MaxPool", "AveragePool"))
                                                    and "Transpose" not in k),
                    _symmetric_same_differs,
                    "Keras' 'same' pads (total // 2, the rest) per axis; torch's symmetric padding matches "
                    "only where that is (p, p) (odd effective kernel and size divisible by the stride)", 5),
    KnownDifference("tf_depthwise_unequal_strides", ("DepthwiseConv2D", "SeparableConv2D"),
                    lambda case: len(set(case.config["strides"])) > 1,
                    "TensorFlow's depthwise conv refuses unequal row and column strides "
                    "(InvalidArgumentError); torch's grouped conv takes them", 41),
    KnownDifference("tf_pool3d_float64", ("MaxPooling3D", "AveragePooling3D"), lambda case: True,
                    "TensorFlow has no float64 MaxPool3D/AvgPool3D kernel on the CPU: the float64 check "
                    "cannot run them (their float32 semantics are Max/AveragePooling1D/2D's)", 24),
    KnownDifference("tf_resize_float32", ("Resizing", "UpSampling2D"),
                    lambda case: case.config.get("torch_mode", case.config.get("interpolation")) in ("bilinear", "bicubic"),
                    "TensorFlow's bilinear and bicubic resize compute and answer float32 in a float64 model "
                    "(1e-8 off); only nearest keeps the dtype", 24),
    KnownDifference("tf_conv3d_transpose_input_gradient", ("Conv3DTranspose",),
                    lambda case: case.config["padding"] == "same" and any(
                        s - k >= 2 for k, s in zip(case.config["kernel_size"], case.config["strides"])),
                    "TensorFlow's Conv3DTranspose 'same' input gradient is wrong where stride - kernel >= 2 "
                    "(its own finite differences disagree; the forward and the 1-D/2-D layers are right)", 42),
    KnownDifference("keras_attention_bias_gradient", ("MultiHeadAttention",),
                    lambda case: case.config["key_dim"] == 1 and case.config["num_heads"] in
                    {s.shape[1] for s in case.inputs},
                    "with key_dim 1 and as many heads as tokens, Keras' MultiHeadAttention adds its projection "
                    "biases wrongly (off a NumPy reference; a forward check of torch's zero-initialised biases "
                    "agrees to the bit)", 42),
    KnownDifference("tf_float32_constant_activation", ("Activation",),
                    lambda case: case.config.get("activation") in ("hard_sigmoid", "hard_silu"),
                    "Keras' hard_sigmoid divides by 6 through a float32 constant on TensorFlow: its float64 "
                    "gradient is 1/6 rounded to float32 (2.5e-9 off)", 32),
    KnownDifference("conv_padding_mode", ("Conv1D", "Conv2D", "Conv3D"),
                    lambda case: case.config.get("padding_mode", "zeros") != "zeros" and _any_padding(case),
                    "a torch conv's padding_mode reflect/replicate/circular has no Keras counterpart "
                    "(Keras pads zeros)", 41),
    KnownDifference("pool_ceil_mode", tuple(k for k in KINDS if k.startswith(("MaxPool", "AveragePool"))),
                    _ceil_mode_differs,
                    "torch's ceil_mode=True adds a last, partial window where (size - pool) % stride != 0 "
                    "and that window starts inside the input; Keras' 'valid' drops it", 41),
    KnownDifference("avg_pool_count_include_pad", tuple(k for k in KINDS if k.startswith("AveragePool")),
                    _count_include_pad_differs,
                    "torch's count_include_pad=True (its default) divides border windows by the full "
                    "pool size; Keras 'same' divides by the input elements the window covers", 41),
    KnownDifference("nearest_legacy", ("Resizing",), _legacy_nearest_differs,
                    "torch's mode='nearest' picks floor(i * in / out); Keras' nearest is torch's "
                    "'nearest-exact' (half-pixel centres): they differ unless out is a multiple of in", 8),
    KnownDifference("align_corners", ("Resizing", "UpSampling2D"), _align_corners_differs,
                    "align_corners=True has no Keras counterpart: Keras resizes with half-pixel centres "
                    "(torch's align_corners=False)", 8),
    KnownDifference("flatten_channels_first", ("Flatten",), _flatten_order_differs,
                    "torch flattens (C, H, W), Keras (H, W, C): the twin must move the channels last first", 3),
    KnownDifference("gru_reset_after_false", ("GRU", "Bidirectional"),
                    lambda case: case.config.get("cell") == "GRU" and not case.config.get("reset_after", True),
                    "Keras' GRU(reset_after=False) applies the reset gate before the recurrent kernel; "
                    "torch's cell is reset_after=True", 31),
    KnownDifference("gelu_tanh", ("Activation",),
                    lambda case: case.config.get("activation") == "gelu" and case.config.get("approximate") == "tanh",
                    "Keras' 'gelu' activation is the exact (erf) GELU; torch's GELU(approximate='tanh') "
                    "is the tanh approximation", 33),
    KnownDifference("leaky_relu_slope", ("Activation",),
                    lambda case: case.config.get("activation") == "leaky_relu" and case.config.get("torch_slope") != 0.2,
                    "Keras' 'leaky_relu' activation has slope 0.2, torch's LeakyReLU() 0.01", 41),
    KnownDifference("activity_regularization", ("ActivityRegularization",),
                    lambda case: bool(case.config.get("l1") or case.config.get("l2")),
                    "Keras' ActivityRegularization adds its penalty to the loss; torch has no such layer", 41),
)


def known_differences(case: LayerCase) -> list[KnownDifference]:
    """The known differences that apply to ``case`` (empty: the twins must agree)."""
    return [d for d in KNOWN_DIFFERENCES if case.kind in d.kinds and d.applies(case)]
