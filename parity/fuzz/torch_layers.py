"""The torch twin of one fuzzed layer (``parity.fuzz.space``): a model whose one module, named
``layer``, is the stock torch counterpart the Keras mapping assumes, built from the config.

Where Keras computes something a stock torch module does not (TensorFlow's 'same' padding, a
transposed conv's output size, the last step of an RNN), the module is a subclass of the stock
one that does the rest in its ``forward``, so its weights keep their stock names.  A torch-only
option of the config (``ceil_mode``, ``padding_mode``, ...) is passed on as drawn.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional

from parity.fuzz.space import CHANNEL_LAYOUTS, rank_of, same_pads, transposed_crop

CONVS = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
TRANSPOSED = {1: nn.ConvTranspose1d, 2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}
MAX_POOLS = {1: nn.MaxPool1d, 2: nn.MaxPool2d, 3: nn.MaxPool3d}
AVG_POOLS = {1: nn.AvgPool1d, 2: nn.AvgPool2d, 3: nn.AvgPool3d}
DROPOUTS = {1: nn.Dropout1d, 2: nn.Dropout2d, 3: nn.Dropout3d}
NORMS = {0: nn.BatchNorm1d, 1: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d}
RECURRENT = {"LSTM": nn.LSTM, "GRU": nn.GRU, "SimpleRNN": nn.RNN}


def _pad_arguments(pads: list[tuple[int, int]]) -> list[int]:
    """F.pad's order: the last axis first."""
    return [p for before, after in reversed(pads) for p in (before, after)]


def _tf_same(x: torch.Tensor, kernel, stride, dilation, value: float = 0.0) -> torch.Tensor:
    pads = [same_pads(size, k, s, d) for size, k, s, d in zip(x.shape[2:], kernel, stride, dilation)]
    return functional.pad(x, _pad_arguments(pads), value=value)


def _per_axis(option, rank: int) -> list[int]:
    """A module's kernel, stride or dilation (an int, or one per axis) as one per axis."""
    return list(option) if isinstance(option, (tuple, list)) else [option] * rank


def _same_padded(base: type, value: float = 0.0) -> type:
    """``base`` (a conv or pool) with TensorFlow's 'same' padding applied first."""

    class SamePadded(base):
        def forward(self, x):
            rank = x.dim() - 2
            kernel, stride, dilation = (_per_axis(option, rank) for option in
                                        (self.kernel_size, self.stride, getattr(self, "dilation", 1)))
            return super().forward(_tf_same(x, kernel, stride, dilation, value))

    SamePadded.__name__ = f"SamePadded{base.__name__}"
    return SamePadded


def conv(kind: str, channels: int, config: dict) -> nn.Module:
    rank, same = rank_of(kind), config["padding"] == "same"
    common = dict(stride=config["strides"], dilation=config["dilation_rate"], groups=config["groups"],
                  bias=config["use_bias"])
    if same and config["torch_padding"] == "symmetric":
        padding = [(k - 1) * d // 2 for k, d in zip(config["kernel_size"], config["dilation_rate"])]
        return CONVS[rank](channels, config["filters"], config["kernel_size"], padding=padding,
                           padding_mode=config["padding_mode"], **common)
    cls = _same_padded(CONVS[rank]) if same else CONVS[rank]
    return cls(channels, config["filters"], config["kernel_size"], **common)


def depthwise(kind: str, channels: int, config: dict) -> nn.Module:
    """Keras' DepthwiseConv (one filter group per input channel) and SeparableConv (that, then 1x1)."""
    rank, multiplier = rank_of(kind), config["depth_multiplier"]
    cls = _same_padded(CONVS[rank]) if config["padding"] == "same" else CONVS[rank]
    separable = "filters" in config
    spatial = cls(channels, channels * multiplier, config["kernel_size"], stride=config["strides"],
                  dilation=config["dilation_rate"], groups=channels, bias=config["use_bias"] and not separable)
    if not separable:
        return spatial
    return Separable(spatial, CONVS[rank](channels * multiplier, config["filters"], 1, bias=config["use_bias"]))


class Separable(nn.Module):
    def __init__(self, depthwise: nn.Module, pointwise: nn.Module):
        super().__init__()
        self.depthwise, self.pointwise = depthwise, pointwise

    def forward(self, x):
        return self.pointwise(self.depthwise(x))


def conv_transpose(kind: str, channels: int, config: dict) -> nn.Module:
    rank = rank_of(kind)
    kernel, stride = config["kernel_size"], config["strides"]
    extra = [max(s - k, 0) for k, s in zip(kernel, stride)]  # Keras' output reaches past torch's full one

    class KerasSized(TRANSPOSED[rank]):
        def forward(self, x):
            y = super().forward(x)
            for axis, (size, k, s) in enumerate(zip(x.shape[2:], kernel, stride)):
                start, length = transposed_crop(size, k, s, config["padding"])
                y = y.narrow(axis + 2, start, length)
            return y

    return KerasSized(channels, config["filters"], kernel, stride=stride, output_padding=extra,
                      bias=config["use_bias"])


def pooling(kind: str, config: dict) -> nn.Module:
    rank, maximum = rank_of(kind), kind.startswith("Max")
    pool, strides = config["pool_size"], config["strides"] or config["pool_size"]
    table = MAX_POOLS if maximum else AVG_POOLS
    if config["padding"] == "valid":
        return table[rank](pool, strides, ceil_mode=config["ceil_mode"])
    if config["torch_padding"] == "symmetric":
        extra = {} if maximum else {"count_include_pad": config.get("count_include_pad", False)}
        return table[rank](pool, strides, padding=[k // 2 for k in pool], **extra)
    if maximum:
        return _same_padded(table[rank], float("-inf"))(pool, strides)
    return TfSameAverage(pool, strides)


class TfSameAverage(nn.Module):
    """TensorFlow's 'same' average: each window's sum over the input elements it covers."""

    def __init__(self, pool, strides):
        super().__init__()
        self.pool, self.strides = list(pool), list(strides)

    def forward(self, x):
        average = getattr(functional, f"avg_pool{x.dim() - 2}d")
        ones = torch.ones_like(x[:1, :1])
        dilation = [1] * len(self.pool)
        return average(_tf_same(x, self.pool, self.strides, dilation), self.pool, self.strides) / \
            average(_tf_same(ones, self.pool, self.strides, dilation), self.pool, self.strides)


def recurrent(kind: str, features: int, config: dict) -> nn.Module:
    """Keras' output: the sequence, or (return_sequences=False) the last step; bidirectional,
    the forward direction's last step beside the backward direction's (at time 0)."""
    cls = RECURRENT[config["cell"]]
    options = dict(batch_first=True, bias=config["use_bias"], bidirectional=kind == "Bidirectional")
    if config["cell"] == "SimpleRNN":
        options["nonlinearity"] = config["activation"]
    units, sequences = config["units"], config["return_sequences"]

    class KerasOutput(cls):
        def forward(self, x):
            y = super().forward(x)[0]
            if sequences:
                return y
            if self.bidirectional:
                return torch.cat([y[:, -1, :units], y[:, 0, units:]], dim=-1)
            return y[:, -1]

    return KerasOutput(features, units, **options)


class Lambda(nn.Module):
    """A module without weights computing ``function(*inputs)``."""

    def __init__(self, function):
        super().__init__()
        self.function = function

    def forward(self, *inputs):
        return self.function(*inputs)


def _spatial_mean_or_max(kind: str, keepdims: bool) -> nn.Module:
    def pool(x):
        axes = tuple(range(2, x.dim()))
        if kind.startswith("GlobalMax"):
            return torch.amax(x, dim=axes, keepdim=keepdims)
        return torch.mean(x, dim=axes, keepdim=keepdims)

    return Lambda(pool)


def _crop(crops) -> nn.Module:
    def crop(x):
        for axis, (before, after) in enumerate(crops):
            x = x.narrow(axis + 2, before, x.shape[axis + 2] - before - after)
        return x

    return Lambda(crop)


def _resize(config: dict) -> nn.Module:
    mode = config["torch_mode"]
    smooth = mode in ("bilinear", "bicubic")
    options = dict(align_corners=config["align_corners"], antialias=config["antialias"]) if smooth else {}
    return Lambda(lambda x: functional.interpolate(x, size=(config["height"], config["width"]), mode=mode, **options))


def _upsample(kind: str, config: dict) -> nn.Module:
    mode = config.get("interpolation", "nearest")
    options = dict(align_corners=config["align_corners"]) if mode == "bilinear" else {}
    return nn.Upsample(scale_factor=tuple(float(s) for s in config["size"]), mode=mode, **options)


ACTIVATIONS = {
    "relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "silu": nn.SiLU, "softplus": nn.Softplus,
    "softsign": nn.Softsign, "elu": nn.ELU, "selu": nn.SELU, "relu6": nn.ReLU6, "hard_sigmoid": nn.Hardsigmoid,
    "hard_silu": nn.Hardswish, "mish": nn.Mish, "linear": nn.Identity,
}


def activation(config: dict, layout: str) -> nn.Module:
    name = config["activation"]
    if name == "gelu":
        return nn.GELU(approximate=config["approximate"])
    if name == "leaky_relu":
        return nn.LeakyReLU(config["torch_slope"])
    if name == "exponential":
        return Lambda(torch.exp)
    if name == "log_softmax":
        return nn.LogSoftmax(dim=1 if layout in CHANNEL_LAYOUTS else -1)  # Keras' axis -1
    return ACTIVATIONS[name]()


def relu(config: dict) -> nn.Module:
    if config["max_value"] is not None:
        return nn.Hardtanh(0.0, config["max_value"])
    if config["negative_slope"]:
        return nn.LeakyReLU(config["negative_slope"])
    if config["threshold"]:
        return nn.Threshold(config["threshold"], 0.0)
    return nn.ReLU()


MERGES = {
    "Add": torch.add, "Subtract": torch.sub, "Multiply": torch.mul, "Maximum": torch.maximum,
    "Minimum": torch.minimum, "Average": lambda a, b: (a + b) / 2,
}


def layer(kind: str, config: dict, shapes: list[tuple[int, ...]], layouts: list[str]) -> nn.Module:
    """The torch module of one fuzzed Keras layer kind, for inputs of canonical ``shapes``."""
    channels, rank = shapes[0][1] if len(shapes[0]) > 1 else None, rank_of(kind)
    if kind.startswith("Conv") and "Transpose" in kind:
        return conv_transpose(kind, channels, config)
    if kind.startswith("Conv"):
        return conv(kind, channels, config)
    if kind.startswith(("Depthwise", "Separable")):
        return depthwise(kind, channels, config)
    if kind.startswith(("MaxPool", "AveragePool")):
        return pooling(kind, config)
    if kind.startswith("Global"):
        return _spatial_mean_or_max(kind, config["keepdims"])
    if kind.startswith("UpSampling"):
        return _upsample(kind, config)
    if kind.startswith("ZeroPadding"):
        return Lambda(lambda x: functional.pad(x, _pad_arguments(config["padding"])))
    if kind.startswith("Cropping"):
        return _crop(config["cropping"])
    if kind.startswith("SpatialDropout"):
        return DROPOUTS[rank](config["rate"])
    if kind in ("LSTM", "GRU", "SimpleRNN", "Bidirectional"):
        return recurrent(kind, shapes[0][-1], config)
    if kind in MERGES:
        return Lambda(MERGES[kind])
    return _plain_layer(kind, config, shapes[0], layouts[0])


def _plain_layer(kind: str, config: dict, shape: tuple[int, ...], layout: str) -> nn.Module:
    features = shape[-1]
    if kind == "Dense":
        return nn.Linear(features, config["units"], bias=config["use_bias"])
    if kind == "BatchNormalization":
        norm = NORMS[len(shape) - 2](shape[1], eps=config["epsilon"], momentum=1.0 - config["momentum"],
                                     affine=config["affine"])
        with torch.no_grad():  # trained-looking statistics, so the inference path is exercised
            norm.running_mean.uniform_(-0.5, 0.5)
            norm.running_var.uniform_(0.5, 2.0)
        return norm
    if kind == "LayerNormalization":
        return nn.LayerNorm(features, eps=config["epsilon"], elementwise_affine=config["scale"], bias=config["center"])
    if kind == "GroupNormalization":
        return nn.GroupNorm(config["groups"], shape[1], eps=config["epsilon"], affine=config["affine"])
    if kind == "RMSNormalization":
        return nn.RMSNorm(features, eps=config["epsilon"])
    if kind == "Embedding":
        return nn.Embedding(config["input_dim"], config["output_dim"])
    if kind == "MultiHeadAttention":
        return Attention(features, config["num_heads"], config["use_bias"])
    if kind == "PReLU":
        return nn.PReLU(shape[1] if config["per_channel"] else 1)
    if kind == "Resizing":
        return _resize(config)
    if kind == "Flatten":
        if config["torch_order"] == "channels_first":
            return nn.Flatten()
        return Lambda(lambda x: torch.flatten(torch.movedim(x, 1, -1), 1))
    if kind == "Activation":
        return activation(config, layout)
    if kind == "ReLU":
        return relu(config)
    if kind == "LeakyReLU":
        return nn.LeakyReLU(config["negative_slope"])
    if kind == "ELU":
        return nn.ELU(config["alpha"])
    if kind == "Softmax":
        return nn.Softmax(dim=config["dim"])
    if kind == "Concatenate":
        return Lambda(lambda a, b: torch.cat([a, b], dim=config["dim"]))
    if kind in ("Dropout", "AlphaDropout"):
        return (nn.Dropout if kind == "Dropout" else nn.AlphaDropout)(config["rate"])
    if kind == "Rescaling":
        return Lambda(lambda x: x * config["scale"] + config["offset"])
    if kind in ("Identity", "GaussianNoise", "GaussianDropout", "ActivityRegularization"):
        return nn.Identity()  # torch has no noise layers: the identity they are in inference
    raise ValueError(f"no torch counterpart for fuzzed kind {kind!r}")


class Attention(nn.MultiheadAttention):
    """Keras' MultiHeadAttention(query, value): torch's (query, key=value, value), its output only."""

    def __init__(self, width: int, heads: int, bias: bool):
        super().__init__(width, heads, bias=bias, batch_first=True)

    def forward(self, query, value=None):
        value = query if value is None else value
        return super().forward(query, value, value, need_weights=False)[0]


class Single(nn.Module):
    def __init__(self, layer: nn.Module):
        super().__init__()
        self.layer = layer

    def forward(self, *inputs):
        return self.layer(*inputs)


def create(name: str, **config) -> nn.Module:
    """``name``: the Keras class name; ``config``: the drawn options, with ``shapes``, ``layouts``
    and ``dtypes`` of the canonical inputs."""
    torch.manual_seed(config.pop("seed", 0))
    shapes, layouts = [tuple(s) for s in config.pop("shapes")], config.pop("layouts")
    config.pop("dtypes")
    model = Single(layer(name, config, shapes, layouts))
    with torch.no_grad():  # no zero-initialised bias or unit scale: each weight must show how it is applied
        for parameter in model.parameters():
            parameter.normal_(0.0, 0.5)
    return model
