"""Small modules that make every compared operation a named module.

Layer-wise comparison hooks modules, so an add or a flatten done inline in
``forward`` would be invisible; these give it a canonical name.
"""

from __future__ import annotations

import torch
from torch import nn


class Add(nn.Module):
    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        total = inputs[0]
        for x in inputs[1:]:
            total = total + x
        return total


def _tf_same_pads(x: torch.Tensor, kernel, stride, dilation) -> tuple[int, int, int, int]:
    from canon.models.medianet import tf_same_padding

    top, bottom = tf_same_padding(x.shape[-2], kernel[0], stride[0], dilation[0])
    left, right = tf_same_padding(x.shape[-1], kernel[1], stride[1], dilation[1])
    return (left, right, top, bottom)


class TFSameConv2d(nn.Conv2d):
    """Conv2d with TensorFlow's 'same' padding: at stride 2 on an even input the extra
    pixel is padded after (bottom/right), which torch's symmetric padding cannot express."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, padding=0, **kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.pad(x, _tf_same_pads(x, self.kernel_size, self.stride, self.dilation))
        return super().forward(x)


class TFSameMaxPool2d(nn.Module):
    """MaxPool2D(k, s, 'same') as TF computes it (padded cells never win the max)."""

    def __init__(self, kernel: int, stride: int):
        super().__init__()
        self.kernel, self.stride = (kernel, kernel), (stride, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.pad(x, _tf_same_pads(x, self.kernel, self.stride, (1, 1)), value=float("-inf"))
        return nn.functional.max_pool2d(x, self.kernel, self.stride)


class Gate(nn.Module):
    """Residual attention: ``(1 + mask) * trunk``."""

    def forward(self, mask: torch.Tensor, trunk: torch.Tensor) -> torch.Tensor:
        return (1.0 + mask) * trunk


class Concat(nn.Module):
    """Channel concatenation (``torch.cat(inputs, dim=1)``) as a named module."""

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return torch.cat(inputs, dim=1)


class ClippedReLU(nn.Module):
    """``min(max(0, x), 1)``.  ``clamp`` passes the gradient where 0 <= x <= 1, both ends
    included, as the spec requires (``hardtanh(x, 0, 1)`` would exclude both ends)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.clamp(x, 0.0, 1.0)


class DyT2d(nn.Module):
    """Dynamic tanh for NCHW maps (seed 003, section 5.2): ``tanh(alpha*x) * gamma + beta``
    with per-channel alpha (init 1), gamma (init 1) and beta (init 0)."""

    def __init__(self, num_features: int):
        super().__init__()
        self.alpha = nn.Parameter(torch.ones(num_features))
        self.beta = nn.Parameter(torch.zeros(num_features))
        self.gamma = nn.Parameter(torch.ones(num_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = (1, -1, 1, 1)
        return torch.tanh(x * self.alpha.view(shape)) * self.gamma.view(shape) + self.beta.view(shape)


class RepeatChannels(nn.Module):
    """A one-channel image repeated to ``channels`` channels."""

    def __init__(self, channels: int):
        super().__init__()
        self.channels = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.repeat(1, self.channels, 1, 1)


class Normalize(nn.Module):
    """``(x - mean) / std`` per channel, with fixed constants (not weights: no state_dict entry).

    The constants are rounded from Python's doubles straight to the input's dtype, as Keras
    does; a float32 buffer cast to float64 later would differ from them by ~1e-8."""

    def __init__(self, mean, std):
        super().__init__()
        self.mean, self.std = tuple(mean), tuple(std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        constant = lambda values: torch.tensor(values, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        return (x - constant(self.mean)) / constant(self.std)
