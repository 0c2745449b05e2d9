"""MeDiANet with the authors' TensorFlow semantics (docs/medianet.md). Twin: impl_tf/models/medianet.py."""

from __future__ import annotations

import torch
from torch import nn

from impl_torch.layers import Add, Gate, TFSameConv2d, TFSameMaxPool2d
from impl_torch.registry import register_family
from canon.models import medianet as spec
from canon.models.medianet import DiETPlan, MeDiANetConfig, ResPlan


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=spec.BN_EPSILON, momentum=spec.BN_TORCH_MOMENTUM)


def _act(kind: str) -> nn.Module:
    return nn.Mish() if kind == "mish" else nn.ReLU()


def _conv(cin: int, cout: int, kernel: int, stride: int = 1, dilation: int = 1) -> TFSameConv2d:
    return TFSameConv2d(cin, cout, kernel, stride=stride, dilation=dilation)


class Res(nn.Module):
    """Pre-activated bottleneck with a projection shortcut from the raw input."""

    def __init__(self, cin: int, cout: int, stride: int, act: str):
        super().__init__()
        width = cout // 4
        self.bn1, self.act1, self.conv1 = _bn(cin), _act(act), _conv(cin, width, 1)
        self.bn2, self.act2, self.conv2 = _bn(width), _act(act), _conv(width, width, 3, stride)
        self.drop = nn.Dropout(spec.RES_DROPOUT)
        self.bn3, self.act3, self.conv3 = _bn(width), _act(act), _conv(width, cout, 1)
        self.shortcut = _conv(cin, cout, 1, stride)
        self.add = Add()

    def forward(self, x):
        y = self.conv1(self.act1(self.bn1(x)))
        y = self.drop(self.conv2(self.act2(self.bn2(y))))
        y = self.conv3(self.act3(self.bn3(y)))
        return self.add(y, self.shortcut(x))


class Branch(nn.Module):
    def __init__(self, width: int, dilation: int):
        super().__init__()
        self.conv = _conv(width, width, 3, dilation=dilation)
        self.drop = nn.Dropout(spec.MDIRES_DROPOUT)

    def forward(self, x):
        return self.drop(self.conv(x))


class MDiRes(nn.Module):
    """Multi-dilated residual block: three parallel dilated 3x3 convs (L2-penalised)."""

    def __init__(self, channels: int, dilations, act: str):
        super().__init__()
        width = channels // 4
        self.bn1, self.act1, self.conv1 = _bn(channels), _act(act), _conv(channels, width, 1)
        self.bn2, self.act2 = _bn(width), _act(act)
        for i, dilation in enumerate(dilations):
            setattr(self, f"branch{i}", Branch(width, dilation))
        self.sum = Add()
        self.bn3, self.act3, self.conv3 = _bn(width), _act(act), _conv(width, channels, 1)
        self.shortcut = _conv(channels, channels, 1)
        self.add = Add()

    def forward(self, x):
        y = self.act2(self.bn2(self.conv1(self.act1(self.bn1(x)))))
        y = self.sum(self.branch0(y), self.branch1(y), self.branch2(y))
        y = self.conv3(self.act3(self.bn3(y)))
        return self.add(y, self.shortcut(x))

    def penalised(self):
        return [self.branch0.conv.weight, self.branch1.conv.weight, self.branch2.conv.weight]


class SoftMask(nn.Module):
    """Encoder-decoder attention mask (names follow the encoder level they belong to)."""

    def __init__(self, channels: int, depth: int, block):
        super().__init__()
        self.depth = depth
        for level in range(1, depth + 1):
            setattr(self, f"pool{level}", TFSameMaxPool2d(2, 2))
            setattr(self, f"down{level}", block(spec.MASK_DILATIONS))
            setattr(self, f"skip{level}", block(spec.MASK_DILATIONS))
            setattr(self, f"dec{level}", block(spec.MASK_DILATIONS))
            setattr(self, f"up{level}", nn.Upsample(scale_factor=2, mode="nearest"))
            setattr(self, f"add{level}", Add())
        self.bottom1, self.bottom2 = block(spec.MASK_DILATIONS), block(spec.MASK_DILATIONS)
        self.conv1, self.conv2 = _conv(channels, channels, 1), _conv(channels, channels, 1)
        self.sigmoid = nn.Sigmoid()

    def forward(self, x):
        m, skips = x, []
        for level in range(1, self.depth + 1):
            m = getattr(self, f"down{level}")(getattr(self, f"pool{level}")(m))
            skips.append(getattr(self, f"skip{level}")(m))
        m = self.bottom2(self.bottom1(m))
        m = getattr(self, f"add{self.depth}")(m, skips[-1])
        for level in range(self.depth, 0, -1):
            m = getattr(self, f"up{level}")(getattr(self, f"dec{level}")(m))
            if level > 1:
                m = getattr(self, f"add{level - 1}")(m, skips[level - 2])
        return self.sigmoid(self.conv2(self.conv1(m)))


class DiET(nn.Module):
    def __init__(self, plan: DiETPlan, config: MeDiANetConfig):
        super().__init__()
        c, act = plan.channels, config.activation
        res = lambda _dilations: Res(c, c, 1, act)
        mdires = lambda dilations: MDiRes(c, dilations, act)
        trunk_block = mdires if config.mdires_placement in ("both", "trunk") else res
        mask_block = mdires if config.mdires_placement in ("both", "mask") else res
        self.res_in = Res(c, c, 1, act)
        self.trunk0, self.trunk1 = trunk_block(plan.trunk_dilations), trunk_block(plan.trunk_dilations)
        self.mask = SoftMask(c, plan.encoder_depth, mask_block)
        self.gate = Gate()
        self.res_out = Res(c, c, 1, act)

    def forward(self, x):
        x = self.res_in(x)
        trunk = self.trunk1(self.trunk0(x))
        return self.res_out(self.gate(self.mask(x), trunk))


class Stem(nn.Module):
    def __init__(self, config: MeDiANetConfig):
        super().__init__()
        self.conv = _conv(config.in_channels, config.c_in, 7, 2)
        self.bn, self.act = _bn(config.c_in), _act(config.activation)
        self.pool = nn.MaxPool2d(2, 2)  # 'valid'

    def forward(self, x):
        return self.pool(self.act(self.bn(self.conv(x))))


class Head(nn.Module):
    def __init__(self, in_features: int, config: MeDiANetConfig):
        super().__init__()
        self.avgpool = nn.AvgPool2d(spec.PAPER_POOL, stride=1) if config.head == "paper" else nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.drop = nn.Dropout(spec.HEAD_DROPOUT)
        self.fc1 = nn.Linear(in_features, 2 * config.c_in)
        self.act = _act(config.activation)
        self.fc2 = nn.Linear(2 * config.c_in, config.num_classes)
        self.softmax = nn.Softmax(dim=1) if config.softmax else None

    def forward(self, x):
        x = self.fc2(self.act(self.fc1(self.drop(self.flatten(self.avgpool(x))))))
        return self.softmax(x) if self.softmax is not None else x


@register_family("medianet")
class MeDiANet(nn.Module):
    def __init__(self, config: MeDiANetConfig):
        super().__init__()
        self.config = config
        self.stem = Stem(config)
        channels = config.c_in
        stages = {}
        for plan in spec.stage_plan(config):
            stage, block = plan.name.split(".")
            if isinstance(plan, ResPlan):
                module = Res(channels, plan.out_channels, plan.stride, config.activation)
                channels = plan.out_channels
            else:
                module = DiET(plan, config)
            stages.setdefault(stage, nn.Module()).add_module(block, module)
        for stage, container in stages.items():
            self.add_module(stage, container)
        self.head = Head(channels, config)
        self._init_weights()

    def _init_weights(self):
        for module in self.modules():  # TF defaults: Glorot-uniform kernels, zero biases
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, x):
        spec.check_input_size(x.shape[-2], x.shape[-1], self.config)
        x = self.stem(x)
        for stage in ("stage1", "stage2", "stage3", "stage4"):
            for block in getattr(self, stage).children():
                x = block(x)
        return self.head(x)

    def regularization_loss(self) -> torch.Tensor:
        """The L2 kernel penalties of the TF model (Keras adds them to the loss)."""
        terms = [spec.L2_DILATED * w.square().sum() for m in self.modules() if isinstance(m, MDiRes) for w in m.penalised()]
        terms += [spec.L2_FC1 * self.head.fc1.weight.square().sum(), spec.L2_FC2 * self.head.fc2.weight.square().sum()]
        return torch.stack(terms).sum()
