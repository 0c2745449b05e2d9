"""Two models in PyTorch: a MobileNetV2 inverted-residual block (1x1 expand, 3x3 depthwise,
1x1 project, ReLU6, residual) and a small Conv1D signal classifier."""

from torch import nn


class InvertedResidual(nn.Module):
    def __init__(self, channels: int = 8, expand: int = 3):
        super().__init__()
        hidden = channels * expand
        self.expand = nn.Conv2d(channels, hidden, 1, bias=False)
        self.expand_norm = nn.GroupNorm(4, hidden)
        self.expand_act = nn.ReLU6()
        self.depthwise = nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden, bias=False)
        self.depthwise_norm = nn.GroupNorm(4, hidden)
        self.depthwise_act = nn.ReLU6()
        self.project = nn.Conv2d(hidden, channels, 1, bias=False)
        self.downsample = nn.Conv2d(channels, channels, 3, stride=2, padding=1, groups=channels)

    def forward(self, x):
        y = self.depthwise_act(self.depthwise_norm(self.depthwise(self.expand_act(self.expand_norm(self.expand(x))))))
        return self.downsample(x + self.project(y))


class SignalNet(nn.Module):
    def __init__(self, channels: int = 2, num_classes: int = 4):
        super().__init__()
        self.conv1 = nn.Conv1d(channels, 8, 5, padding=2)
        self.act1 = nn.ReLU()
        self.conv2 = nn.Conv1d(8, 12, 3, dilation=2, padding=2)
        self.act2 = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool1d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(12, num_classes)

    def forward(self, x):
        return self.fc(self.flatten(self.pool(self.act2(self.conv2(self.act1(self.conv1(x)))))))


def create(name: str = "mobilenet_block", **config) -> nn.Module:
    return {"mobilenet_block": InvertedResidual, "conv1d": SignalNet}[name](**config)
