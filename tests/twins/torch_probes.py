"""One-layer torch models that probe a single twin layer (reference side of keras_probes)."""

from torch import nn

from impl_torch.layers import ClippedReLU


def create(name: str, channels: int = 4, output_size=(7, 7), factor: int = 2, naive: bool = False) -> nn.Module:
    del naive  # the Keras side's switch
    if name == "adaptive_pool":
        return nn.Sequential(nn.AdaptiveAvgPool2d(tuple(output_size)))
    if name == "pixel_shuffle":
        return nn.Sequential(nn.PixelShuffle(factor))
    if name == "clipped_relu":
        return nn.Sequential(ClippedReLU())
    raise ValueError(f"unknown probe {name!r}")
