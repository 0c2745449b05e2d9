"""UNet and ResUNet (seed 003; its module names). Twin: impl_tf/models/unet.py.

Weightless operations the seed writes inline or shares (``self.pool`` used four
times, ``torch.cat``, the residual add) are named modules here, one per call, so
every compared operation has a canonical name.
"""

from __future__ import annotations

from torch import nn

from impl_torch.layers import Add, Concat, DyT2d
from impl_torch.registry import register_family
from canon.models import unet as spec
from canon.models.unet import ResUNetConfig, UNetConfig


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=spec.BN_EPSILON, momentum=spec.BN_TORCH_MOMENTUM)


def _norm(kind: str, channels: int) -> nn.Module:
    # "none" keeps an Identity in the norm's slot, so double_conv.N indices do not depend on the option
    return {"batch": _bn, "dyt": DyT2d}.get(kind, lambda _: nn.Identity())(channels)


class DoubleConv(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, norm: str, stride: int = 1):
        super().__init__()
        self.double_conv = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False), _norm(norm, out_channels), nn.ReLU(),
            nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False), _norm(norm, out_channels), nn.ReLU(),
        )

    def forward(self, x):
        return self.double_conv(x)


def _up(in_channels: int, out_channels: int) -> nn.ConvTranspose2d:
    return nn.ConvTranspose2d(in_channels, out_channels, 2, stride=2)


@register_family("unet")
class UNet(nn.Module):
    def __init__(self, config: UNetConfig):
        super().__init__()
        self.config = config
        widths, levels = config.widths, len(config.widths) - 1
        self.pools = nn.ModuleList(nn.MaxPool2d(2) for _ in range(levels))
        self.encoder = nn.ModuleList(
            DoubleConv(c_in, c_out, config.norm) for c_in, c_out in zip((config.in_channels, *widths), widths))
        decoder: list[nn.Module] = []
        for wide, narrow in zip(widths[:0:-1], widths[-2::-1]):
            decoder += [_up(wide, narrow), DoubleConv(2 * narrow, narrow, config.norm)]
        decoder.append(nn.Sequential(nn.Conv2d(widths[0], config.out_channels, 1), nn.Sigmoid()))
        self.decoder = nn.ModuleList(decoder)
        self.concats = nn.ModuleList(Concat() for _ in range(levels))

    def forward(self, x):
        spec.check_input_size(x.shape[-2], x.shape[-1], self.config)
        skips = [self.encoder[0](x)]
        for pool, encode in zip(self.pools, self.encoder[1:]):
            skips.append(encode(pool(skips[-1])))
        x = skips.pop()
        for level, concat in enumerate(self.concats):
            x = concat(skips.pop(), self.decoder[2 * level](x))  # skip first, as the seed
            x = self.decoder[2 * level + 1](x)
        return self.decoder[-1](x)


class ResNetBlock(nn.Module):
    """DoubleConv plus a shortcut (1x1 stride-2 conv with bias + BN when downsampling); no ReLU after the add."""

    def __init__(self, in_channels: int, out_channels: int, norm: str, stride: int = 1, downsample: bool = False):
        super().__init__()
        self.block = DoubleConv(in_channels, out_channels, norm, stride)
        self.shortcut = (nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride=2), _bn(out_channels))
                         if downsample else nn.Identity())
        self.add = Add()

    def forward(self, x):
        return self.add(self.block(x), self.shortcut(x))


@register_family("resunet")
class ResUNet(nn.Module):
    def __init__(self, config: ResUNetConfig):
        super().__init__()
        self.config = config
        w, d = spec.RESUNET_WIDTHS, spec.RESUNET_DECODER
        self.tail = nn.Sequential(
            nn.Conv2d(config.in_channels, w[0], 7, 2, 3, bias=False), _bn(w[0]), nn.ReLU(), nn.MaxPool2d(3, 2, 1))
        layers = []
        for index, (count, c_in, c_out) in enumerate(zip(config.blocks, (w[0], *w), w)):
            first = ResNetBlock(c_in, c_out, config.norm, 1, False) if index == 0 else \
                ResNetBlock(c_in, c_out, config.norm, 2, True)
            layers.append(nn.Sequential(first, *(ResNetBlock(c_out, c_out, config.norm) for _ in range(count - 1))))
        self.encoder = nn.ModuleList(layers)
        self.center = nn.Sequential(nn.Conv2d(w[3], spec.RESUNET_CENTER, 3, padding=1), _bn(spec.RESUNET_CENTER),
                                    nn.ReLU())
        skip_widths = (w[3], w[2], w[1], w[0])
        self.decoder = nn.ModuleList(
            nn.Sequential(_up(previous + skip, d), DoubleConv(d, d, config.norm))
            for previous, skip in zip((spec.RESUNET_CENTER, d, d, d), skip_widths))
        self.concats = nn.ModuleList(Concat() for _ in skip_widths)
        self.head = nn.Sequential(_up(d, d), nn.Conv2d(d, config.out_channels, 1), nn.Sigmoid())

    def forward(self, x):
        spec.check_input_size(x.shape[-2], x.shape[-1], self.config)
        skips = [self.tail(x)]
        for layer in self.encoder:
            skips.append(layer(skips[-1]))
        x = self.center(skips[-1])
        for concat, decode in zip(self.concats, self.decoder):
            x = decode(concat(x, skips.pop()))  # previous first, then the encoder map, as the seed
        return self.head(x)
