"""AlexNet (seed 002; torchvision names). Twin: impl_tf/models/alexnet.py."""

from __future__ import annotations

from torch import nn

from impl_torch.registry import register_family
from canon.models import alexnet as spec
from canon.models.alexnet import AlexNetConfig


def _feature(layer, in_channels: int) -> nn.Module:
    kind = layer[0]
    if kind == "conv":
        _, out, kernel, stride, padding = layer
        return nn.Conv2d(in_channels, out, kernel, stride, padding)
    if kind == "maxpool":
        return nn.MaxPool2d(layer[1], layer[2])
    return nn.ReLU()


@register_family("alexnet")
class AlexNet(nn.Module):
    def __init__(self, config: AlexNetConfig):
        super().__init__()
        layers, channels = [], config.in_channels
        for layer in spec.FEATURES:
            layers.append(_feature(layer, channels))
            channels = layer[1] if layer[0] == "conv" else channels
        self.features = nn.Sequential(*layers)
        self.flatten = nn.Flatten()
        flat = spec.FEATURE_CHANNELS * spec.FEATURE_MAP * spec.FEATURE_MAP
        self.classifier = nn.Sequential(
            nn.Dropout(spec.DROPOUT), nn.Linear(flat, spec.HIDDEN), nn.ReLU(),
            nn.Dropout(spec.DROPOUT), nn.Linear(spec.HIDDEN, spec.HIDDEN), nn.ReLU(),
            nn.Linear(spec.HIDDEN, config.num_classes),
        )
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(module.bias)

    def forward(self, x):
        spec.check_input_size(x.shape[-2], x.shape[-1])
        return self.classifier(self.flatten(self.features(x)))
