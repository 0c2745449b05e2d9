"""Frozen torchvision references, so the torch twins are checked against torchvision itself
without installing it (PyPI's torchvision does not import beside the CPU build of torch).

``tests/data/torchvision/<model>.json`` holds torchvision's state_dict names and shapes;
``<model>.npz`` an input and torchvision's output for weights drawn by :func:`synthetic_weights`
(NumPy only, so both sides draw the same).  ``make_torchvision_references.py`` wrote them.
"""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import numpy as np

DATA = Path(__file__).parent / "data" / "torchvision"
# model -> (torchvision constructor options, parity input shape)
MODELS = {
    "resnet18": ({"num_classes": 10}, (2, 3, 64, 96)),
    "resnet34": ({"num_classes": 10}, (2, 3, 64, 96)),
    "densenet121": ({"num_classes": 10}, (2, 3, 64, 96)),
    "alexnet": ({"num_classes": 10}, (2, 3, 224, 230)),
    "vgg11": ({"num_classes": 10}, (2, 3, 64, 96)),
}
NOT_WEIGHTS = ("num_batches_tracked",)


def synthetic_weights(shapes: dict[str, list[int]]) -> dict[str, np.ndarray]:
    """Deterministic, well-scaled weights for a state_dict layout: He-normal kernels,
    BN scales and running variances in [0.5, 1.5], small shifts.  Each tensor's stream is
    seeded by its name, so the result does not depend on dict order."""
    weights = {}
    for name, shape in shapes.items():
        rng = np.random.default_rng(zlib.crc32(name.encode()))
        if len(shape) >= 2:
            value = rng.standard_normal(shape) * np.sqrt(2.0 / int(np.prod(shape[1:])))
        elif name.endswith(("running_var", "weight")):  # BN variance and scale
            value = rng.uniform(0.5, 1.5, shape)
        else:  # biases, BN shift and running mean
            value = rng.uniform(-0.1, 0.1, shape)
        weights[name] = value.astype(np.float32)
    return weights


def load_reference(model: str) -> tuple[dict[str, list[int]], dict[str, np.ndarray]]:
    shapes = json.loads((DATA / f"{model}.json").read_text())["state_dict"]
    with np.load(DATA / f"{model}.npz") as arrays:
        return shapes, {key: arrays[key] for key in arrays.files}
