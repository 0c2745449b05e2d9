"""Frozen timm references, so the torch twins of the MedMNIST+ architectures are checked against
timm itself without installing it (timm needs torchvision, which does not import beside this
project's CPU build of torch).

Two kinds of file in ``tests/data/timm/``, written by ``tests/data/make_timm_references.py``:
- ``<model>.json`` + ``<model>.npz``: a reduced configuration of each family (REDUCED): timm's
  state_dict names and shapes, an input and timm's output for weights drawn by
  ``synthetic_weights`` (NumPy only, so both sides draw the same);
- ``<model>.layout.json``: the full-size model's state_dict names and shapes (FULL_SIZE), for a
  strict load of a real timm checkpoint.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tests.torchvision_reference import NOT_WEIGHTS, synthetic_weights

DATA = Path(__file__).parent / "data" / "timm"


@dataclass(frozen=True)
class TimmReference:
    """The same network as timm builds it and as the twin's config describes it."""

    timm_name: str
    timm_options: dict
    config: dict  # the twin's config (model name: the key of REDUCED)
    input_shape: tuple[int, ...]
    # a timm function that takes what create_model does not (EfficientNet's reduced multipliers)
    timm_builder: str | None = None
    environment: dict = field(default_factory=dict)


_EFFICIENTNET = dict(channel_multiplier=0.25, depth_multiplier=0.5, num_classes=7)
_SAM = dict(img_size=64, patch_size=8, embed_dim=32, depth=4, num_heads=2, window_size=3, global_attn_indexes=(1, 3),
            num_classes=7)
_VIT = dict(img_size=(32, 48), patch_size=8, embed_dim=32, depth=2, num_heads=2, num_classes=7)
REDUCED: dict[str, TimmReference] = {
    **{name: TimmReference(name, _VIT, _VIT, (2, 3, 32, 48))
       for name in ("vit_base_patch16_224", "vit_base_patch16_224.dino", "vit_base_patch16_clip_224",
                    "eva02_base_patch16_clip_224")},
    "efficientnet_b0": TimmReference("efficientnet_b0", _EFFICIENTNET, _EFFICIENTNET, (2, 3, 40, 72),
                                     timm_builder="timm.models.efficientnet:_gen_efficientnet"),
    # made for 64 px, fed 40x56: timm resamples pos_embed and the global tables on every forward
    "samvit_base_patch16": TimmReference("samvit_base_patch16", {**_SAM, "neck_chans": 16},
                                         {**_SAM, "neck_channels": 16, "input_size": (40, 56)}, (2, 3, 40, 56)),
}
# the full-size models (a MedMNIST head of 9 classes), layout only
FULL_SIZE: dict[str, dict] = {
    "efficientnet_b4": {"num_classes": 9},
    "samvit_base_patch16": {"num_classes": 9},
    **{name: {"num_classes": 9} for name in ("vit_base_patch16_224", "vit_base_patch16_224.dino",
                                            "vit_base_patch16_clip_224", "eva02_base_patch16_clip_224")},
}


def load_reduced(model: str) -> tuple[dict[str, list[int]], dict[str, np.ndarray]]:
    shapes = json.loads((DATA / f"{model}.json").read_text())["state_dict"]
    with np.load(DATA / f"{model}.npz") as arrays:
        return shapes, {key: arrays[key] for key in arrays.files}


def load_layout(model: str) -> dict[str, list[int]]:
    return json.loads((DATA / f"{model}.layout.json").read_text())["state_dict"]


__all__ = ["DATA", "FULL_SIZE", "NOT_WEIGHTS", "REDUCED", "TimmReference", "load_layout", "load_reduced",
           "synthetic_weights"]
