"""A network that walks into the classic torch/Keras pitfalls (torch side, the reference).

A stride-2 conv with symmetric padding, a padded max-pool applied straight to
signed values, and BatchNorm with torch's epsilon and momentum.
"""

from torch import nn


class Pitfalls(nn.Module):
    def __init__(self, in_channels: int = 3, num_classes: int = 6):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 8, 3, stride=2, padding=1)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)  # pads with -inf
        self.bn = nn.BatchNorm2d(8, eps=1e-5, momentum=0.1)
        self.conv2 = nn.Conv2d(8, 12, 3, padding=1, bias=False)
        self.relu = nn.ReLU()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(12, num_classes)

    def forward(self, x):
        x = self.bn(self.maxpool(self.conv1(x)))
        return self.fc(self.flatten(self.avgpool(self.relu(self.conv2(x)))))


def create(name: str, **config) -> nn.Module:
    config.pop("naive", None)  # the Keras side's switch; torch is the reference
    return Pitfalls(**config)
