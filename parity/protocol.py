"""The worker protocol, owned by the core: array keys, the ops with their arguments and answers,
the adapter interface, and the npz files arrays cross in.

A framework's adapter (``parity/adapters/``) is a subclass of :class:`Adapter` with one method per
op; its worker serves an instance (``parity.worker``), and a training run uses one in-process
(``repro/backends.py``), so both go through the same typed surface.  Arrays never cross the pipe:
an op is given file paths, reads its inputs from one npz and writes its results to another.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Mapping

import numpy as np

from canon.files import atomic_write
from canon.training import OUTPUT_LOSSES

# -- keys of the exchanged arrays ---------------------------------------------------------
MODEL_INPUT = "x"  # the model's inputs, canonical layout: x:0, x:1, ...
OUTPUT, LAYER, INPUT, GRAD, STATE, TARGETS = "output", "layer", "input", "grad", "state", "targets"
LOSS = "loss"  # the scalar loss of a gradients pass
# The loss kinds a gradients pass takes, one per model output (their sum is the loss): the
# per-output kinds of the one loss vocabulary, canon.training.LOSSES.
LOSSES = OUTPUT_LOSSES


def model_input_key(index: int) -> str:
    return f"{MODEL_INPUT}:{index}"


def input_arrays(inputs) -> dict[str, np.ndarray]:
    """A model's inputs (one array, or a sequence of them) keyed for the exchange."""
    inputs = [inputs] if isinstance(inputs, np.ndarray) else list(inputs)
    return {model_input_key(i): np.asarray(x) for i, x in enumerate(inputs)}


def model_inputs(arrays: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    """The model inputs held in an exchange file, in order."""
    found, index = [], 0
    while model_input_key(index) in arrays:
        found.append(arrays[model_input_key(index)])
        index += 1
    if not found:
        raise KeyError(f"the array file holds no model input ({model_input_key(0)}, ...)")
    return found


def input_gradient_key(index: int) -> str:
    """The gradient of the loss with respect to model input ``index``."""
    return f"{GRAD}:input:{index}"


INPUT_GRADIENT = input_gradient_key(0)


def onnx_input_name(index: int, count: int) -> str:
    """Both frameworks' ONNX files name their inputs alike: ``input``, or ``input_0, input_1 ...``."""
    return "input" if count == 1 else f"input_{index}"


def output_key(index: int) -> str:
    return f"{OUTPUT}:{index}"


def layer_key(name: str) -> str:
    return f"{LAYER}:{name}"


def input_key(name: str, index: int) -> str:
    """The ``index``-th input a layer was called with (captured for the isolated check)."""
    return f"{INPUT}:{name}:{index}"


def grad_key(weight: str) -> str:
    return f"{GRAD}:{weight}"


def state_key(weight: str) -> str:
    """A weight that a training pass may change but does not train (BN running statistics)."""
    return f"{STATE}:{weight}"


def target_key(index: int) -> str:
    return f"{TARGETS}:{index}"


# -- the ops ----------------------------------------------------------------------------
class Adapter:
    """One framework's side of the protocol.  Models live in the adapter, addressed by handle;
    paths name canonical safetensors (weights), npz files (arrays) or ONNX files.  Each method's
    docstring is the op's contract: its arguments and what it answers (JSON-able)."""

    framework = "?"  # its row name in parity.frameworks: reported by environment() and in weight files

    def setup(self, threads: int = 1, device: str = "cpu", deterministic: bool = True) -> dict:
        """Threads, device, deterministic kernels, TF32 off.  Answers :meth:`environment`."""
        raise NotImplementedError

    def environment(self) -> dict:
        """``{framework, versions, threads, device, device_name, flags}``; flags named ``tf32*`` must be False."""
        raise NotImplementedError

    def build(self, handle: str, factory: str, model: str, config: dict, seed: int, dtype: str = "float32",
              inputs: list[dict] | None = None) -> dict:
        """Seed everything, build ``factory(model, **config)`` in ``dtype``; ``inputs`` (``{shape, dtype,
        layout}`` each, canonical shapes) builds a model that creates its weights on first call.
        Answers ``{weights: {canonical name: shape}, parameters, layers: [leaf layer names],
        modules: [{name, kind, weights: [its own canonical names], leaf, config}]}``."""
        raise NotImplementedError

    def free(self, handle: str) -> None:
        raise NotImplementedError

    def model(self, handle: str):
        """The framework's model object (for in-process users; not an op)."""
        raise NotImplementedError

    def save_weights(self, handle: str, path: str, metadata: dict | None = None) -> dict:
        """Canonical safetensors.  Answers ``{digest}``."""
        raise NotImplementedError

    def load_weights(self, handle: str, path: str) -> dict:
        """Every weight assigned exactly once from a canonical file.  Answers the transfer audit."""
        raise NotImplementedError

    def load_native(self, handle: str, path: str) -> dict:
        """The framework's own checkpoint.  Answers ``{tensors, parameters, ...}``."""
        raise NotImplementedError

    def save_native(self, handle: str, path: str) -> dict:
        raise NotImplementedError

    def forward(self, handle: str, input_path: str, output_path: str, capture: bool | list = False) -> dict:
        """Inference on the ``x:i`` inputs; writes ``output:i`` (a tuple or dict output flattened, a
        dict by sorted key) and, for the layers ``capture`` names (True: every leaf), each one's
        ``layer:`` output (its first tensor) and ``input:`` inputs, and the model inputs again.
        Answers ``{layers: [recorded names in run order]}``."""
        raise NotImplementedError

    def forward_isolated(self, handle: str, reference_path: str, output_path: str, layers: list[str]) -> dict:
        """Each layer alone on the reference's captured ``input:`` arrays; writes ``layer:`` outputs."""
        raise NotImplementedError

    def gradients(self, handle: str, input_path: str, output_path: str, loss: str | list = "cross_entropy",
                  capture: list | None = None) -> dict:
        """One train-mode pass (dropout off) on the ``x:i`` inputs and ``targets:i``, state restored
        after; writes ``grad:`` of every trained weight and of each floating input
        (``grad:input:i``), ``state:`` of the others, ``loss``; with ``capture``, those layers' inputs
        in this pass (``input:``: what a BatchNorm's statistics were computed from).
        Answers ``{loss}``."""
        raise NotImplementedError

    def export_onnx(self, handle: str, path: str, input_shape: list[int], opset: int = 18, **options) -> dict:
        """An ONNX file taking and returning the canonical layout, checked before it is renamed into
        place; ``inputs=[{shape, dtype}, ...]`` for several or integer inputs (named by
        :func:`onnx_input_name`).  Answers ``{exporter, opset, versions, input_layout}``."""
        raise NotImplementedError

    def ops(self) -> dict:
        """The op table a worker serves: every op of :data:`OP_NAMES`, each overridden."""
        missing = [name for name in OP_NAMES if getattr(type(self), name) is getattr(Adapter, name)]
        if missing:
            raise TypeError(f"adapter {type(self).__qualname__} lacks the ops {missing}")
        return {name: getattr(self, name) for name in OP_NAMES}


OP_NAMES = ("setup", "environment", "build", "free", "save_weights", "load_weights", "load_native", "save_native",
            "forward", "forward_isolated", "gradients", "export_onnx")


def load_adapter(path: str) -> Adapter:
    """``"package.module:Class"`` -> an instance.  Imports the module, and so its framework: call it
    only in the process that is to hold that framework (a worker, or a training run)."""
    module_name, _, attribute = path.partition(":")
    if not attribute:
        raise ValueError(f"an adapter is named 'package.module:Class', got {path!r}")
    cls = getattr(importlib.import_module(module_name), attribute, None)
    if cls is None:
        raise ValueError(f"adapter {path!r}: module {module_name!r} has no {attribute!r}")
    return cls()


# -- npz exchange -------------------------------------------------------------------------
def save_arrays(path: str, arrays: Mapping[str, np.ndarray]) -> None:
    """Streamed to a temporary file and renamed: an in-memory buffer would hold every array
    twice more (VGG's float64 gradients are a gigabyte)."""
    atomic_write(path, lambda temporary: np.savez(temporary, **{key: np.asarray(v) for key, v in arrays.items()}))


def load_arrays(path: str) -> dict[str, np.ndarray]:
    if not Path(path).is_file():
        raise FileNotFoundError(f"array file not found: {path}")
    with np.load(path, allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


class ArrayFile(Mapping):
    """An npz on disk read one array per access, so large results (captured layers, float64
    gradients) are kept for later checks without holding them in memory, and can be handed to
    another worker by path.  ``close()`` removes the file."""

    def __init__(self, path: str, arrays: Mapping[str, np.ndarray] | None = None):
        if arrays is not None:
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
