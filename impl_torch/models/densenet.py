"""DenseNet-121 (torchvision semantics and state_dict names). Twin: impl_tf/models/densenet.py."""

from __future__ import annotations

from collections import OrderedDict

from torch import nn

from impl_torch.layers import Concat
from impl_torch.registry import register_family
from canon.models.densenet import BN_EPSILON, BN_TORCH_MOMENTUM, DenseBlockPlan, DenseNetConfig, block_plan, num_features


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPSILON, momentum=BN_TORCH_MOMENTUM)


class DenseLayer(nn.Module):
    """BN-ReLU-Conv1x1 (bottleneck) - BN-ReLU-Conv3x3 (growth), concatenated after the input."""

    def __init__(self, in_channels: int, config: DenseNetConfig):
        super().__init__()
        width = config.bn_size * config.growth_rate
        self.norm1 = _bn(in_channels)
        self.relu1 = nn.ReLU()
        self.conv1 = nn.Conv2d(in_channels, width, 1, bias=False)
        self.norm2 = _bn(width)
        self.relu2 = nn.ReLU()
        self.conv2 = nn.Conv2d(width, config.growth_rate, 3, padding=1, bias=False)
        self.concat = Concat()

    def forward(self, x):
        new = self.conv2(self.relu2(self.norm2(self.conv1(self.relu1(self.norm1(x))))))
        return self.concat(x, new)


def _transition(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(OrderedDict(
        norm=_bn(in_channels), relu=nn.ReLU(), conv=nn.Conv2d(in_channels, out_channels, 1, bias=False),
        pool=nn.AvgPool2d(2, 2),
    ))


def _dense_block(plan: DenseBlockPlan, config: DenseNetConfig) -> nn.Sequential:
    return nn.Sequential(OrderedDict(
        (f"denselayer{j + 1}", DenseLayer(plan.in_channels + j * config.growth_rate, config))
        for j in range(plan.num_layers)
    ))


@register_family("densenet")
class DenseNet(nn.Module):
    def __init__(self, config: DenseNetConfig):
        super().__init__()
        stem = config.num_init_features
        layers = OrderedDict(
            conv0=nn.Conv2d(config.in_channels, stem, 7, 2, 3, bias=False), norm0=_bn(stem), relu0=nn.ReLU(),
            pool0=nn.MaxPool2d(3, 2, 1),
        )
        for plan in block_plan(config):
            layers[f"denseblock{plan.index}"] = _dense_block(plan, config)
            if plan.transition_out is not None:
                grown = plan.in_channels + plan.num_layers * config.growth_rate
                layers[f"transition{plan.index}"] = _transition(grown, plan.transition_out)
        layers["norm5"] = _bn(num_features(config))
        self.features = nn.Sequential(layers)
        self.relu = nn.ReLU()  # torchvision applies these three functionally
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.classifier = nn.Linear(num_features(config), config.num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        nn.init.zeros_(self.classifier.bias)

    def forward(self, x):
        return self.classifier(self.flatten(self.avgpool(self.relu(self.features(x)))))
