"""One stock torch layer per model, named ``layer``: the reference side of keras_layers.

Each kind is the torch counterpart the built-in Keras mapping assumes (parity.adapters.keras_mappings).
"""

from __future__ import annotations

import torch
from torch import nn


class Separable(nn.Module):
    """Keras' SeparableConv as torch writes it: a grouped depthwise conv, then a 1x1 conv."""

    def __init__(self, conv, channels: int, multiplier: int, out: int, kernel: int):
        super().__init__()
        self.depthwise = conv(channels, channels * multiplier, kernel, padding=kernel // 2, groups=channels, bias=False)
        self.pointwise = conv(channels * multiplier, out, 1)

    def forward(self, x):
        return self.pointwise(self.depthwise(x))


class SelfAttention(nn.Module):
    def __init__(self):
        super().__init__()
        self.layer = nn.MultiheadAttention(8, 2, batch_first=True)

    def forward(self, x):
        return self.layer(x, x, x, need_weights=False)[0]


class Recurrent(nn.Module):
    """An RNN's output sequence (torch also returns the final states; Keras, with
    return_sequences=True, only the sequence)."""

    def __init__(self, layer: nn.Module):
        super().__init__()
        self.layer = layer

    def forward(self, x):
        return self.layer(x)[0]


class Tokens(nn.Module):
    """Free variables: a class token and a position embedding, as a ViT's patch embedding holds them."""

    def __init__(self, width: int = 6, tokens: int = 4):
        super().__init__()
        self.cls_token = nn.Parameter(torch.randn(1, 1, width) * 0.1)
        self.pos_embed = nn.Parameter(torch.randn(1, tokens + 1, width) * 0.1)

    def forward(self, x):
        return torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed


class Scale(nn.Module):
    """A user's own layer: one learned factor per channel."""

    def __init__(self, channels: int = 4):
        super().__init__()
        self.weight = nn.Parameter(torch.linspace(0.5, 1.5, channels))

    def forward(self, x):
        return x * self.weight[None, :, None, None]


class Holder(nn.Module):
    def __init__(self, layer: nn.Module):
        super().__init__()
        self.layer = layer

    def forward(self, x):
        return self.layer(x)


LAYERS = {
    "conv1d": lambda: nn.Conv1d(4, 6, 3, padding=1, groups=2),
    "conv2d": lambda: nn.Conv2d(4, 6, 3, padding=1, groups=2),
    "conv3d": lambda: nn.Conv3d(3, 4, 3, padding=1),
    "conv1d_transpose": lambda: nn.ConvTranspose1d(4, 3, 3, stride=2),
    "conv2d_transpose": lambda: nn.ConvTranspose2d(4, 3, 3, stride=2),
    "conv3d_transpose": lambda: nn.ConvTranspose3d(3, 2, 3, stride=2),
    "depthwise1d": lambda: nn.Conv1d(4, 8, 3, padding=1, groups=4),
    "depthwise2d": lambda: nn.Conv2d(4, 8, 3, padding=1, groups=4),
    "separable1d": lambda: Separable(nn.Conv1d, 4, 2, 5, 3),
    "separable2d": lambda: Separable(nn.Conv2d, 4, 2, 5, 3),
    "dense_nd": lambda: nn.Linear(6, 5),
    "batchnorm1d": lambda: nn.BatchNorm1d(4),
    "batchnorm2d": lambda: nn.BatchNorm2d(4),
    "batchnorm3d": lambda: nn.BatchNorm3d(3),
    "layernorm": lambda: nn.LayerNorm(6),
    "groupnorm": lambda: nn.GroupNorm(2, 4),
    "rmsnorm": lambda: nn.RMSNorm(6, eps=1e-6),
    "embedding": lambda: nn.Embedding(11, 6),
    "lstm": lambda: nn.LSTM(5, 4, batch_first=True),
    "gru": lambda: nn.GRU(5, 4, batch_first=True),
    "simple_rnn": lambda: nn.RNN(5, 4, batch_first=True),
    "bidirectional": lambda: nn.LSTM(5, 4, batch_first=True, bidirectional=True),
    "prelu": lambda: nn.PReLU(4),
    "user_scale": lambda: Scale(4),
}
RECURRENT = {"lstm", "gru", "simple_rnn", "bidirectional"}


class TwoOutputs(nn.Module):
    """A tuple output: a conv's map and its sum over channels."""

    def __init__(self):
        super().__init__()
        self.layer = nn.Conv2d(4, 3, 3, padding=1)

    def forward(self, x):
        y = self.layer(x)
        return y, y.sum(dim=1)


class FirstChannels(nn.Module):
    def forward(self, x):
        return x[:, :2]


def create(name: str, **config) -> nn.Module:
    torch.manual_seed(config.get("seed", 0))
    if name == "two_outputs":
        return TwoOutputs()
    if name == "undeclared_layout":
        return Holder(FirstChannels())
    if name == "attention":
        return SelfAttention()
    if name == "free_variables":
        return Holder(Tokens())
    layer = LAYERS[name]()
    if isinstance(layer, (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)):
        with torch.no_grad():  # trained-looking statistics, so the inference path is exercised
            layer.running_mean.uniform_(-0.5, 0.5)
            layer.running_var.uniform_(0.5, 2.0)
    return Recurrent(layer) if name in RECURRENT else Holder(layer)
