"""EfficientNet-B0..B7 (timm semantics; state_dict names equal timm's, so its checkpoints load strictly).
Twin: impl_tf/models/efficientnet.py.

timm's ``bn1``/``bn2`` are BatchNormAct2d (the activation inside the norm module).  Here each is a
plain BatchNorm2d holding its SiLU as the child ``act`` (timm's name for it, no weights), applied
by the block after the norm: layer-wise comparison then sees ``bn1`` (the normalised map) and
``bn1.act`` separately, and the state_dict keys stay timm's.  timm's inline mean, product and
skip sum are the modules ``se.pool``, ``se.mul`` and ``add`` here.
"""

from __future__ import annotations

import math
from collections import OrderedDict

import torch
from torch import nn

from impl_torch.layers import Add
from impl_torch.registry import register_family
from canon.models.efficientnet import (
    BN_EPSILON, BN_TORCH_MOMENTUM, BlockPlan, EfficientNetConfig, block_plan, head_channels, stem_channels,
)


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPSILON, momentum=BN_TORCH_MOMENTUM)


def _bn_act(channels: int) -> nn.BatchNorm2d:
    """A BatchNorm2d carrying its activation as ``.act``; its forward is the norm alone."""
    norm = _bn(channels)
    norm.act = nn.SiLU()
    return norm


def _conv(in_channels: int, out_channels: int, kernel: int, stride: int = 1, groups: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel, stride, kernel // 2, groups=groups, bias=False)


class SpatialMean(nn.Module):
    """``x.mean((2, 3), keepdim=True)``, as timm's SqueezeExcite computes it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean((2, 3), keepdim=True)


class Multiply(nn.Module):
    def forward(self, x: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
        return x * gate


class SqueezeExcite(nn.Module):
    """mean -> 1x1 conv (bias) -> SiLU -> 1x1 conv (bias) -> sigmoid, times the input."""

    def __init__(self, channels: int, reduced: int):
        super().__init__()
        self.pool = SpatialMean()
        self.conv_reduce = nn.Conv2d(channels, reduced, 1)
        self.act1 = nn.SiLU()
        self.conv_expand = nn.Conv2d(reduced, channels, 1)
        self.gate = nn.Sigmoid()
        self.mul = Multiply()

    def forward(self, x):
        return self.mul(x, self.gate(self.conv_expand(self.act1(self.conv_reduce(self.pool(x))))))


class DepthwiseSeparable(nn.Module):
    """conv_dw -> bn1 + SiLU -> SE -> conv_pw -> bn2 (no activation) (+ skip)."""

    def __init__(self, plan: BlockPlan):
        super().__init__()
        c = plan.in_channels
        self.conv_dw = _conv(c, c, plan.kernel, plan.stride, groups=c)
        self.bn1 = _bn_act(c)
        self.se = SqueezeExcite(c, plan.se_channels)
        self.conv_pw = _conv(c, plan.out_channels, 1)
        self.bn2 = _bn(plan.out_channels)
        self.add = Add() if plan.has_skip else None

    def forward(self, x):
        y = self.bn1.act(self.bn1(self.conv_dw(x)))
        y = self.bn2(self.conv_pw(self.se(y)))
        return y if self.add is None else self.add(y, x)


class InvertedResidual(nn.Module):
    """conv_pw -> bn1 + SiLU -> conv_dw -> bn2 + SiLU -> SE -> conv_pwl -> bn3 (+ skip)."""

    def __init__(self, plan: BlockPlan):
        super().__init__()
        mid = plan.mid_channels
        self.conv_pw = _conv(plan.in_channels, mid, 1)
        self.bn1 = _bn_act(mid)
        self.conv_dw = _conv(mid, mid, plan.kernel, plan.stride, groups=mid)
        self.bn2 = _bn_act(mid)
        self.se = SqueezeExcite(mid, plan.se_channels)
        self.conv_pwl = _conv(mid, plan.out_channels, 1)
        self.bn3 = _bn(plan.out_channels)
        self.add = Add() if plan.has_skip else None

    def forward(self, x):
        y = self.bn1.act(self.bn1(self.conv_pw(x)))
        y = self.bn2.act(self.bn2(self.conv_dw(y)))
        y = self.bn3(self.conv_pwl(self.se(y)))
        return y if self.add is None else self.add(y, x)


BLOCKS = {"ds": DepthwiseSeparable, "ir": InvertedResidual}


@register_family("efficientnet")
class EfficientNet(nn.Module):
    def __init__(self, config: EfficientNetConfig):
        super().__init__()
        stem, head = stem_channels(config), head_channels(config)
        stages = block_plan(config)
        self.conv_stem = _conv(config.in_channels, stem, 3, 2)
        self.bn1 = _bn_act(stem)
        self.blocks = nn.Sequential(*(nn.Sequential(*(BLOCKS[p.block](p) for p in stage)) for stage in stages))
        self.conv_head = _conv(stages[-1][-1].out_channels, head, 1)
        self.bn2 = _bn_act(head)
        self.global_pool = nn.Sequential(OrderedDict(pool=nn.AdaptiveAvgPool2d(1), flatten=nn.Flatten(1)))
        self.classifier = nn.Linear(head, config.num_classes)  # the last Linear: its input is the embedding
        self._init_weights()

    def _init_weights(self):
        """timm's (TF's) scheme: conv N(0, 2/fan_out) with a grouped conv's fan-out per group,
        BN 1/0, Linear U(+-1/sqrt(out_features)), biases 0."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                fan_out = module.kernel_size[0] * module.kernel_size[1] * module.out_channels // module.groups
                nn.init.normal_(module.weight, 0.0, math.sqrt(2.0 / fan_out))
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Linear):
                bound = 1.0 / math.sqrt(module.out_features)
                nn.init.uniform_(module.weight, -bound, bound)
                nn.init.zeros_(module.bias)

    def forward(self, x):
        x = self.bn1.act(self.bn1(self.conv_stem(x)))
        x = self.blocks(x)
        x = self.bn2.act(self.bn2(self.conv_head(x)))
        return self.classifier(self.global_pool(x))
