"""``create_model(name, **cfg)``: canon resolves the config, the family's registered builder builds it.

Each family module registers its builder where it is defined (``@register_family("resnet")``);
``impl_tf/__init__.py`` imports ``impl_tf.models``, which imports them all.
"""

from __future__ import annotations

import keras

from canon import models as canon_models

_BUILDERS = canon_models.Builders("Keras")
register_family = _BUILDERS.register  # decorator: builder(config) builds every model of that family


def families() -> list[str]:
    return _BUILDERS.families()


def list_models() -> list[str]:
    return canon_models.list_models()


def create_model(name: str, **config) -> keras.Model:
    return _BUILDERS.build(name, **config)
