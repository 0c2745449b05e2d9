"""Small torch models, each around one layer where ports go wrong: the faithful reference side of
keras_planted (which plants one known bug in its twin of that layer)."""

from __future__ import annotations

import torch
from torch import nn


def _conv(c_in: int = 3, c_out: int = 4) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 3, padding=1)


MODELS = {
    "norm_epsilon": lambda: nn.Sequential(_conv(), nn.BatchNorm2d(4)),
    "bn_momentum_convention": lambda: nn.Sequential(_conv(), nn.BatchNorm2d(4)),
    "bn_running_variance_biased": lambda: nn.Sequential(_conv(), nn.BatchNorm2d(4)),
    "gelu_approximation": lambda: nn.Sequential(nn.Linear(6, 8), nn.GELU()),
    "same_padding_asymmetry": lambda: nn.Sequential(nn.Conv2d(3, 4, 3, stride=2, padding=1)),
    "maxpool_padding_value": lambda: nn.Sequential(_conv(), nn.MaxPool2d(3, stride=2, padding=1)),
    "avgpool_count_include_pad": lambda: nn.Sequential(_conv(), nn.AvgPool2d(3, stride=1, padding=1)),
    "flatten_order": lambda: nn.Sequential(_conv(3, 2), nn.Flatten(), nn.Linear(2 * 4 * 6, 3)),
    "dense_kernel_transposed": lambda: nn.Sequential(nn.Linear(6, 6)),
    "softmax_axis": lambda: nn.Sequential(_conv(), nn.Softmax(dim=1)),
    "leaky_relu_slope": lambda: nn.Sequential(_conv(), nn.LeakyReLU()),
    "gru_reset_after": lambda: nn.GRU(5, 4, batch_first=True),
    "gru_gate_order": lambda: nn.GRU(5, 4, batch_first=True),
    "lstm_bias": lambda: nn.LSTM(5, 4, batch_first=True),
    "resize_mode": lambda: nn.Sequential(_conv(), nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True)),
    "uncatalogued": lambda: nn.Sequential(_conv(), nn.Sigmoid()),
}


class Sequence(nn.Module):
    """An RNN's output sequence as the model's output."""

    def __init__(self, rnn: nn.Module):
        super().__init__()
        self.rnn = rnn

    def forward(self, x):
        return self.rnn(x)[0]


def create(name: str, **config) -> nn.Module:
    torch.manual_seed(0)
    model = MODELS[name]()
    return Sequence(model) if isinstance(model, nn.RNNBase) else model
