"""``create_model(name, **cfg)``: spec resolves the config, this table builds it."""

from __future__ import annotations

import keras

from spec import models as spec_models
from impl_tf.models import medianet, resnet

_BUILDERS = {
    "resnet": resnet.ResNet,
    "medianet": medianet.MeDiANet,
}


def list_models() -> list[str]:
    return spec_models.list_models()


def create_model(name: str, **config) -> keras.Model:
    resolved = spec_models.resolve(name, **config)
    return _BUILDERS[resolved.family](resolved)
