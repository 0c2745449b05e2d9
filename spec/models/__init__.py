"""Model registry: every zoo model is a name, a family and a config (data, not code).

Each framework keeps its own table of family builders; both resolve names here,
so ``create_model("resnet18", num_classes=10)`` means the same network in both.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from spec.errors import ConfigError, UnknownModelError
from spec.models.aecnn import AECNNConfig
from spec.models.alexnet import AlexNetConfig
from spec.models.densenet import DenseNetConfig
from spec.models.medianet import VARIANTS as MEDIANET_VARIANTS, MeDiANetConfig
from spec.models.resnet import ResNetConfig
from spec.models.unet import ResUNetConfig, UNetConfig
from spec.models.vgg import PLANS as VGG_PLANS, VGGConfig

# name -> (config class, defaults that distinguish the variant)
_REGISTRY: dict[str, tuple[type, dict[str, Any]]] = {
    "alexnet": (AlexNetConfig, {}),
    **{f"vgg{depth}": (VGGConfig, {"depth": depth}) for depth in VGG_PLANS},
    "resnet18": (ResNetConfig, {"blocks": (2, 2, 2, 2)}),
    "resnet34": (ResNetConfig, {"blocks": (3, 4, 6, 3)}),
    "densenet121": (DenseNetConfig, {"block_config": (6, 12, 24, 16)}),
    "aecnn_autoencoder": (AECNNConfig, {"stage": "autoencoder"}),
    "aecnn": (AECNNConfig, {"stage": "joint"}),
    "unet": (UNetConfig, {}),
    "resunet": (ResUNetConfig, {}),
    # "medianet" alone takes any (c_in, blocks, res_blocks); the paper's variants are named
    "medianet": (MeDiANetConfig, {}),
    **{
        f"medianet_{variant}": (MeDiANetConfig, {"c_in": c_in, "blocks": b, "res_blocks": r})
        for variant, (c_in, b, r) in MEDIANET_VARIANTS.items()
    },
}


def list_models() -> list[str]:
    return sorted(_REGISTRY)


def resolve(name: str, **overrides: Any):
    """Return the validated config of model ``name`` with ``overrides`` applied."""
    try:
        config_cls, defaults = _REGISTRY[name]
    except KeyError:
        raise UnknownModelError(
            f"unknown model {name!r}; known models: {', '.join(list_models())}"
        ) from None
    fields = {f.name for f in dataclasses.fields(config_cls)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise ConfigError(
            f"model {name!r} has no option(s) {unknown}; its options are {sorted(fields)}"
        )
    values = {**defaults, **overrides}
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}  # JSON gives lists
    config = config_cls(**values)
    config.validate()
    return config
