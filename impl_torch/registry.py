"""``create_model(name, **cfg)``: canon resolves the config, the family's registered builder builds it.

Each family module registers its builder where it is defined (``@register_family("resnet")``);
``impl_torch/__init__.py`` imports ``impl_torch.models``, which imports them all.
"""

from __future__ import annotations

from typing import Callable

import torch

from canon import models as spec_models
from canon.errors import UnknownModelError

_BUILDERS: dict[str, Callable[..., torch.nn.Module]] = {}


def register_family(family: str) -> Callable:
    """Decorator: ``builder(config)`` builds every canon model whose config names ``family``."""
    def register(builder):
        if family in _BUILDERS:
            raise ValueError(f"family {family!r} has two PyTorch builders: {_BUILDERS[family].__qualname__}, "
                             f"{builder.__qualname__}")
        _BUILDERS[family] = builder
        return builder
    return register


def families() -> list[str]:
    return sorted(_BUILDERS)


def list_models() -> list[str]:
    return spec_models.list_models()


def create_model(name: str, **config) -> torch.nn.Module:
    resolved = spec_models.resolve(name, **config)
    try:
        builder = _BUILDERS[resolved.family]
    except KeyError:
        raise UnknownModelError(f"model {name!r} (family {resolved.family!r}) has no PyTorch builder; "
                                f"register one with @register_family({resolved.family!r})") from None
    return builder(resolved)

