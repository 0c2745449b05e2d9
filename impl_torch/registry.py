"""``create_model(name, **cfg)``: spec resolves the config, this table builds it."""

from __future__ import annotations

import torch

from spec import models as spec_models
from impl_torch.models import medianet, resnet

_BUILDERS = {
    "resnet": resnet.ResNet,
    "medianet": medianet.MeDiANet,
}


def list_models() -> list[str]:
    return spec_models.list_models()


def create_model(name: str, **config) -> torch.nn.Module:
    resolved = spec_models.resolve(name, **config)
    return _BUILDERS[resolved.family](resolved)
