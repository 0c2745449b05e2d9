"""Framework-free helpers shared by the adapters, run inside a framework's process (the keys, ops
and files they serve are the core's: ``parity.protocol``)."""

from __future__ import annotations

import importlib
import re
from typing import Callable, Mapping

import numpy as np

from parity.protocol import LOSSES, input_key, target_key


def load_factory(path: str) -> Callable:
    """``"package.module:function"`` -> the function."""
    module_name, _, attribute = path.partition(":")
    if not attribute:
        raise ValueError(f"factory must look like 'package.module:function', got {path!r}")
    module = importlib.import_module(module_name)
    try:
        return getattr(module, attribute)
    except AttributeError:
        raise ValueError(f"factory {path!r}: module {module_name!r} has no {attribute!r}") from None


def loss_plan(loss, arrays: Mapping[str, np.ndarray], outputs: int) -> list[tuple[str, np.ndarray]]:
    """One (loss kind, targets) per model output: ``loss`` is a kind or a list of kinds.

    Kinds: ``parity.protocol.LOSSES``.  The total loss is their sum.
    """
    kinds = [loss] if isinstance(loss, str) else list(loss)
    unknown = [k for k in kinds if k not in LOSSES]
    if unknown:
        raise ValueError(f"unknown loss {unknown}; known: {', '.join(LOSSES)}")
    if len(kinds) != outputs:
        raise ValueError(f"the model has {outputs} output(s) but {len(kinds)} loss(es) were given: {kinds}")
    return [(kind, arrays[target_key(i)]) for i, kind in enumerate(kinds)]


def layer_inputs(arrays: Mapping[str, np.ndarray], name: str) -> list[np.ndarray]:
    inputs, index = [], 0
    while input_key(name, index) in arrays:
        inputs.append(arrays[input_key(name, index)])
        index += 1
    if not inputs:
        raise KeyError(f"reference holds no captured input for layer {name!r}")
    return inputs


# torchvision's published DenseNet files predate its module names: "denselayer1.norm.1.weight"
# means "denselayer1.norm1.weight" (torchvision renames them the same way when it loads them).
_LEGACY_DENSENET_KEY = re.compile(r"^(.*denselayer\d+\.(?:norm|relu|conv))\.([12]\.(?:weight|bias|running_mean|running_var))$")


def checkpoint_key(key: str) -> str:
    """A torch checkpoint's key as the twins name it: DataParallel's ``module.`` prefix dropped,
    torchvision's legacy DenseNet names updated."""
    key = key.removeprefix("module.")
    legacy = _LEGACY_DENSENET_KEY.match(key)
    return legacy.group(1) + legacy.group(2) if legacy else key


def checked_onnx(path: str) -> tuple[int, str]:
    """Run onnx.checker (full check) on an exported file; return its default-domain opset and onnx's version."""
    import onnx

    model = onnx.load(path)
    onnx.checker.check_model(model, full_check=True)
    return int(next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))), onnx.__version__


class Models:
    """The models a worker holds, by handle."""

    def __init__(self):
        self._models: dict[str, object] = {}

    def put(self, handle: str, model) -> None:
        self._models[handle] = model

    def get(self, handle: str):
        try:
            return self._models[handle]
        except KeyError:
            raise KeyError(f"no model with handle {handle!r}; built: {sorted(self._models)}") from None

    def drop(self, handle: str) -> None:
        self._models.pop(handle, None)
