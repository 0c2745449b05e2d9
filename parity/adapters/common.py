"""Framework-free helpers shared by the adapters (run inside the workers)."""

from __future__ import annotations

import importlib
import re
from pathlib import Path
from typing import Callable, Mapping

import numpy as np

from spec.files import atomic_write


OUTPUT = "output"
LAYER = "layer"
INPUT = "input"


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


def output_key(index: int) -> str:
    return f"{OUTPUT}:{index}"


def layer_key(name: str) -> str:
    return f"{LAYER}:{name}"


def input_key(name: str, index: int) -> str:
    return f"{INPUT}:{name}:{index}"


LOSSES = ("cross_entropy", "bce_logits", "bce", "mse")
INPUT_GRADIENT = "grad:input"


def target_key(index: int) -> str:
    return f"targets:{index}"


def loss_plan(loss, arrays: Mapping[str, np.ndarray], outputs: int) -> list[tuple[str, np.ndarray]]:
    """One (loss kind, targets) per model output: ``loss`` is a kind or a list of kinds.

    Kinds: cross_entropy (class indices), bce_logits (0/1 labels on logits), bce (on
    probabilities, log clamped at -100 as torch's BCELoss), mse.  The total loss is their sum.
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


def save_arrays(path: str, arrays: Mapping[str, np.ndarray]) -> None:
    """Streamed to a temporary file and renamed: an in-memory buffer would hold every array
    twice more (VGG's float64 gradients are a gigabyte)."""
    atomic_write(path, lambda temporary: np.savez(temporary, **{key: np.asarray(v) for key, v in arrays.items()}))


# torchvision's published DenseNet files predate its module names: "denselayer1.norm.1.weight"
# means "denselayer1.norm1.weight" (torchvision renames them the same way when it loads them).
_LEGACY_DENSENET_KEY = re.compile(r"^(.*denselayer\d+\.(?:norm|relu|conv))\.([12]\.(?:weight|bias|running_mean|running_var))$")


def checkpoint_key(key: str) -> str:
    """A torch checkpoint's key as the twins name it: DataParallel's ``module.`` prefix dropped,
    torchvision's legacy DenseNet names updated."""
    key = key.removeprefix("module.")
    legacy = _LEGACY_DENSENET_KEY.match(key)
    return legacy.group(1) + legacy.group(2) if legacy else key


def load_arrays(path: str) -> dict[str, np.ndarray]:
    if not Path(path).is_file():
        raise FileNotFoundError(f"array file not found: {path}")
    with np.load(path, allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


class ArrayFile(Mapping):
    """A saved npz read one array per access, so large results (float64 gradients) can be kept
    for later checks on disk instead of in memory.  ``close()`` removes the file."""

    def __init__(self, path: str, arrays: Mapping[str, np.ndarray]):
        save_arrays(path, arrays)
        self.path = path
        self._data = np.load(path, allow_pickle=False)

    def __getitem__(self, key: str) -> np.ndarray:
        return self._data[key]

    def __iter__(self):
        return iter(self._data.files)

    def __len__(self) -> int:
        return len(self._data.files)

    def __contains__(self, key) -> bool:  # without reading the array
        return key in self._data.files

    def close(self) -> None:
        self._data.close()
        Path(self.path).unlink(missing_ok=True)


# The operations every adapter serves, with one signature across frameworks.
OP_NAMES = ("setup", "environment", "build", "free", "save_weights", "load_weights", "load_native", "save_native",
            "forward", "forward_isolated", "gradients", "export_onnx")


def collect_ops(namespace: Mapping) -> dict[str, Callable]:
    """An adapter's OPS table from its module namespace; a missing op is an error at import."""
    missing = [name for name in OP_NAMES if not callable(namespace.get(name))]
    if missing:
        raise TypeError(f"adapter {namespace.get('__name__')!r} lacks the ops {missing}")
    return {name: namespace[name] for name in OP_NAMES}


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
