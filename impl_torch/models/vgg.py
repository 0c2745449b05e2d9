"""VGG 11/13/16/19 (seed 002; torchvision names). Twin: impl_tf/models/vgg.py."""

from __future__ import annotations

from torch import nn

from impl_torch.registry import register_family
from canon.models import vgg as spec
from canon.models.vgg import VGGConfig


@register_family("vgg")
class VGG(nn.Module):
    def __init__(self, config: VGGConfig):
        super().__init__()
        layers, channels = [], config.in_channels
        for kind, out in spec.feature_layers(config):
            if kind == "conv":
                layers.append(nn.Conv2d(channels, out, 3, padding=1))
                channels = out
            else:
                layers.append(nn.ReLU() if kind == "relu" else nn.MaxPool2d(2, 2))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(spec.POOL_SIZE)
        self.flatten = nn.Flatten()
        flat = spec.FEATURE_CHANNELS * spec.POOL_SIZE[0] * spec.POOL_SIZE[1]
        self.classifier = nn.Sequential(
            nn.Linear(flat, spec.HIDDEN), nn.ReLU(), nn.Dropout(spec.DROPOUT),
            nn.Linear(spec.HIDDEN, spec.HIDDEN), nn.ReLU(), nn.Dropout(spec.DROPOUT),
            nn.Linear(spec.HIDDEN, config.num_classes),
        )
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, 0.0, spec.LINEAR_INIT_STD)
                nn.init.zeros_(module.bias)

    def forward(self, x):
        return self.classifier(self.flatten(self.avgpool(self.features(x))))
