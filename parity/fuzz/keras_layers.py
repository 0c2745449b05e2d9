"""The Keras twin of one fuzzed layer (``parity.fuzz.space``): a functional model whose one
layer, named ``layer``, is the stock Keras class the case names, built from the config.
Options only torch has (``torch_*``, ``ceil_mode``, ``count_include_pad``, ``padding_mode``,
``align_corners``) are the torch twin's; Keras ignores them."""

from __future__ import annotations

import keras
from keras import layers

from parity.fuzz.space import CHANNEL_LAYOUTS, rank_of


def keras_axis(dim: int, layout: str, rank: int) -> int:
    """The Keras axis of canonical (torch) axis ``dim`` of an input of ``rank`` axes."""
    if layout not in CHANNEL_LAYOUTS or dim == 0:
        return dim
    return rank - 1 if dim == 1 else dim - 1


def keras_shape(shape: list[int], layout: str) -> tuple[int, ...]:
    """A canonical shape without its batch, as Keras holds it (channels last)."""
    return (*shape[2:], shape[1]) if layout in CHANNEL_LAYOUTS else tuple(shape[1:])


def _pick(config: dict, *names: str) -> dict:
    return {name: config[name] for name in names if name in config}


def conv_layer(kind: str, config: dict) -> layers.Layer:
    cls = getattr(layers, kind)
    if "Transpose" in kind:
        return cls(**_pick(config, "filters", "kernel_size", "strides", "padding", "use_bias"), name="layer")
    if kind.startswith("Depthwise"):
        return cls(**_pick(config, "kernel_size", "strides", "padding", "depth_multiplier", "dilation_rate", "use_bias"),
                   name="layer")
    return cls(**_pick(config, "filters", "kernel_size", "strides", "padding", "depth_multiplier", "dilation_rate",
                       "groups", "use_bias"), name="layer")


def recurrent_layer(kind: str, config: dict) -> layers.Layer:
    options = _pick(config, "units", "return_sequences", "use_bias", "reset_after", "activation")
    if kind == "Bidirectional":
        return layers.Bidirectional(getattr(layers, config["cell"])(**options), merge_mode="concat", name="layer")
    return getattr(layers, kind)(**options, name="layer")


def _pairs(amounts: list[list[int]]):
    return tuple(tuple(a) for a in amounts) if len(amounts) > 1 else tuple(amounts[0])


def layer(kind: str, config: dict, shapes: list[list[int]], layouts: list[str]) -> layers.Layer:
    rank = rank_of(kind)
    cls = getattr(layers, kind)
    if kind.startswith(("Conv", "Depthwise", "Separable")):
        return conv_layer(kind, config)
    if kind in ("LSTM", "GRU", "SimpleRNN", "Bidirectional"):
        return recurrent_layer(kind, config)
    if kind.startswith(("MaxPool", "AveragePool")):
        return cls(**_pick(config, "pool_size", "strides", "padding"), name="layer")
    if kind.startswith("UpSampling"):
        size = config["size"][0] if rank == 1 else tuple(config["size"])
        return cls(size, **_pick(config, "interpolation"), name="layer")
    if kind.startswith("ZeroPadding"):
        return cls(_pairs(config["padding"]), name="layer")
    if kind.startswith("Cropping"):
        return cls(_pairs(config["cropping"]), name="layer")
    if kind == "BatchNormalization":
        return cls(momentum=config["momentum"], epsilon=config["epsilon"], center=config["affine"],
                   scale=config["affine"], name="layer")
    if kind == "GroupNormalization":
        return cls(config["groups"], epsilon=config["epsilon"], center=config["affine"], scale=config["affine"],
                   name="layer")
    if kind == "PReLU":
        spatial = len(shapes[0]) - 2
        shared = list(range(1, spatial + 1)) if config["per_channel"] else list(range(1, spatial + 2))
        return cls(shared_axes=shared or None, name="layer")
    if kind == "Resizing":
        interpolation = "nearest" if config["torch_mode"].startswith("nearest") else config["torch_mode"]
        return cls(config["height"], config["width"], interpolation=interpolation, antialias=config["antialias"],
                   name="layer")
    if kind in ("Softmax", "Concatenate"):
        return cls(axis=keras_axis(config["dim"], layouts[0], len(shapes[0])), name="layer")
    if kind == "Flatten":
        return cls(name="layer")
    keras_options = {key: value for key, value in config.items()
                     if not key.startswith("torch_") and key not in ("approximate",)}
    return cls(**keras_options, name="layer")


def create(name: str, **config) -> keras.Model:
    """``name``: the Keras class name; ``config``: the drawn options, with ``shapes`` and
    ``layouts`` of the canonical inputs."""
    config.pop("seed", None)
    shapes, layouts = config.pop("shapes"), config.pop("layouts")
    dtypes = config.pop("dtypes")
    inputs = [keras.Input(keras_shape(shape, layout), dtype=None if dtype.startswith("float") else dtype)
              for shape, layout, dtype in zip(shapes, layouts, dtypes)]
    built = layer(name, config, shapes, layouts)
    if name in ("Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum", "Concatenate"):
        return keras.Model(inputs, built(inputs))
    if name == "MultiHeadAttention":
        return keras.Model(inputs, built(inputs[0], inputs[-1]))
    return keras.Model(inputs, built(inputs[0]))
