"""``create_model(name, **cfg)``: spec resolves the config, this table builds it."""

from __future__ import annotations

import torch

from spec import models as spec_models
from impl_torch.models import aecnn, alexnet, densenet, medianet, resnet, unet, vgg

_BUILDERS = {
    "alexnet": alexnet.AlexNet,
    "vgg": vgg.VGG,
    "resnet": resnet.ResNet,
    "densenet": densenet.DenseNet,
    "aecnn": aecnn.AECNN,
    "unet": unet.UNet,
    "resunet": unet.ResUNet,
    "medianet": medianet.MeDiANet,
}


def list_models() -> list[str]:
    return spec_models.list_models()


def create_model(name: str, **config) -> torch.nn.Module:
    resolved = spec_models.resolve(name, **config)
    return _BUILDERS[resolved.family](resolved)
