"""ResNet-18/34 (torchvision semantics; parameter names match torchvision checkpoints)."""

from __future__ import annotations

from torch import nn

from impl_torch.layers import Add
from impl_torch.registry import register_family
from canon.models.resnet import BN_EPSILON, BN_TORCH_MOMENTUM, FC_INIT_STD, STAGE_WIDTHS, BasicBlockPlan, ResNetConfig, block_plan


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPSILON, momentum=BN_TORCH_MOMENTUM)


class BasicBlock(nn.Module):
    def __init__(self, plan: BasicBlockPlan):
        super().__init__()
        self.conv1 = nn.Conv2d(plan.in_channels, plan.out_channels, 3, plan.stride, 1, bias=False)
        self.bn1 = _bn(plan.out_channels)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(plan.out_channels, plan.out_channels, 3, 1, 1, bias=False)
        self.bn2 = _bn(plan.out_channels)
        if plan.has_downsample:
            self.downsample = nn.Sequential(
                nn.Conv2d(plan.in_channels, plan.out_channels, 1, plan.stride, bias=False),
                _bn(plan.out_channels),
            )
        else:
            self.downsample = None
        self.add = Add()
        self.relu2 = nn.ReLU()

    def forward(self, x):
        y = self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.relu2(self.add(y, shortcut))


@register_family("resnet")
class ResNet(nn.Module):
    def __init__(self, config: ResNetConfig):
        super().__init__()
        self.conv1 = nn.Conv2d(config.in_channels, STAGE_WIDTHS[0], 7, 2, 3, bias=False)
        self.bn1 = _bn(STAGE_WIDTHS[0])
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        plans = block_plan(config)
        for stage in range(1, 5):
            blocks = [BasicBlock(p) for p in plans if p.name.startswith(f"layer{stage}.")]
            setattr(self, f"layer{stage}", nn.Sequential(*blocks))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(STAGE_WIDTHS[-1], config.num_classes)
        self._init_weights()

    def _init_weights(self):
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        nn.init.normal_(self.fc.weight, 0.0, FC_INIT_STD)
        nn.init.zeros_(self.fc.bias)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(self.flatten(self.avgpool(x)))
