"""A PyTorch model made of a repeated sub-module, as subclassed Keras mirrors it attribute by attribute."""

from torch import nn


class ConvBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.norm = nn.GroupNorm(2, c_out)
        self.act = nn.SiLU()

    def forward(self, x):
        return self.act(self.norm(self.conv(x)))


class Net(nn.Module):
    def __init__(self, in_channels: int = 3, num_classes: int = 4):
        super().__init__()
        self.blocks = nn.ModuleList([ConvBlock(in_channels, 8), ConvBlock(8, 8)])
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.head = nn.Linear(8, num_classes)

    def forward(self, x):
        for block in self.blocks:
            x = block(x)
        return self.head(self.flatten(self.pool(x)))


def create(name: str = "subclassed", **config) -> nn.Module:
    return Net(**config)
