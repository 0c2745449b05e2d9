"""The model names: each family's config module registers its names where the config is defined.

``@register_models({"resnet18": {"blocks": (2, 2, 2, 2)}})`` on a config class makes
``resolve("resnet18", **overrides)`` that config with those defaults.  Each twin registers a
builder for the config's ``family`` (``impl_*/registry.py``), so one name means one network in both.
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
from typing import Any, Callable

from canon.errors import ConfigError, UnknownModelError

MeanStd = tuple[tuple[float, float, float], tuple[float, float, float]]
# The input normalisations models are trained with (timm's default configs name the same three).
IMAGENET: MeanStd = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
INCEPTION: MeanStd = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
OPENAI_CLIP: MeanStd = ((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711))

# name -> (config class, the defaults that distinguish the variant)
_MODELS: dict[str, tuple[type, dict[str, Any]]] = {}
_MEAN_STD: dict[str, MeanStd] = {}


def register_models(variants: dict[str, dict[str, Any]],
                    mean_std: MeanStd | dict[str, MeanStd] = IMAGENET) -> Callable[[type], type]:
    """Class decorator: register each ``name: defaults`` of ``variants`` for this config class.
    ``mean_std``: the input normalisation of these models (one for all, or per name), which a
    recipe that normalises per architecture (medmnist_plus) uses."""
    per_name = mean_std if isinstance(mean_std, dict) else dict.fromkeys(variants, mean_std)
    missing = sorted(set(variants) - set(per_name))
    if missing:
        raise ValueError(f"models {missing} have no mean_std")

    def register(config_cls: type) -> type:
        for name, defaults in variants.items():
            if name in _MODELS:
                raise ValueError(f"model {name!r} is registered twice ({_MODELS[name][0].__name__}, "
                                 f"{config_cls.__name__})")
            _MODELS[name] = (config_cls, dict(defaults))
            _MEAN_STD[name] = per_name[name]
        return config_cls
    return register


def list_models() -> list[str]:
    return sorted(_MODELS)


# The config option that fixes the size of image a model is fed, where one does (AlexNet's flatten,
# SAM's resampled tables, ViT's position embedding): a training run sets it to the size it feeds.
FED_SIZE_OPTIONS = ("input_size", "img_size")


def fed_size_option(name: str) -> str | None:
    """The option of model ``name`` that fixes its input's (H, W), or None where any size goes."""
    fields = {f.name for f in dataclasses.fields(resolve(name))}
    return next((option for option in FED_SIZE_OPTIONS if option in fields), None)


def mean_std(name: str) -> MeanStd:
    """The (mean, std) per RGB channel that model ``name`` expects its inputs normalised with."""
    if name not in _MEAN_STD:
        raise UnknownModelError(f"unknown model {name!r}; known models: {', '.join(list_models())}")
    return _MEAN_STD[name]


def resolve(name: str, **overrides: Any):
    """Return the validated config of model ``name`` with ``overrides`` applied."""
    try:
        config_cls, defaults = _MODELS[name]
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


def import_family_modules(package: str, path) -> None:
    """Import every module of a models package (``__name__``, ``__path__``), so that each one's
    registration runs: a new family is one new file, with no list of families to edit."""
    for module in pkgutil.iter_modules(path):
        if not module.name.startswith("_"):
            importlib.import_module(f"{package}.{module.name}")


class Builders:
    """A twin's table of family builders: ``@register("resnet")`` on the builder where it is
    defined, ``build(name, **config)`` resolves the name here and calls its family's builder."""

    def __init__(self, twin: str):
        self.twin, self._builders = twin, {}

    def register(self, family: str) -> Callable:
        def register(builder):
            if family in self._builders:
                raise ValueError(f"family {family!r} has two {self.twin} builders: "
                                 f"{self._builders[family].__qualname__}, {builder.__qualname__}")
            self._builders[family] = builder
            return builder
        return register

    def families(self) -> list[str]:
        return sorted(self._builders)

    def build(self, name: str, **config):
        resolved = resolve(name, **config)
        try:
            builder = self._builders[resolved.family]
        except KeyError:
            raise UnknownModelError(f"model {name!r} (family {resolved.family!r}) has no {self.twin} builder; "
                                    f"register one with @register_family({resolved.family!r})") from None
        return builder(resolved)
