"""Runners produce outputs; the comparator (``parity.compare``) judges them.

:class:`FrameworkRunner` drives one framework's worker through its adapter;
:class:`OnnxRuntimeRunner` runs an ONNX file in onnxruntime.  Both return plain
NumPy arrays keyed as the adapters write them (``output:0``, ``layer:<name>``).
"""

from __future__ import annotations

import itertools
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import numpy as np

from parity import frameworks
from parity.protocol import INPUT_ARRAY, ArrayFile, load_arrays, output_key, save_arrays, target_key
from parity.worker import DEFAULT_STARTUP_TIMEOUT, WorkerClient



@dataclass
class BuiltModel:
    """A model living in a worker, with what its twin must agree on."""

    runner: "FrameworkRunner"
    handle: str
    weights: dict[str, tuple[int, ...]]
    parameters: int
    layers: list[str] = field(default_factory=list)


class FrameworkRunner:
    """One framework in its own worker process, with a scratch folder for exchanged files."""

    def __init__(self, framework: str, threads: int = 1, device: str = "cpu", deterministic: bool = True,
                 adapter: str | None = None, workdir: str | None = None, call_timeout: float | None = None):
        if framework not in frameworks.FRAMEWORKS and adapter is None:
            raise ValueError(f"unknown framework {framework!r}; known: {', '.join(frameworks.names())} "
                             "(or pass adapter=)")
        self.framework = framework
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix=f"twinframe-{framework}-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._adapter, self._options = adapter or frameworks.get(framework).adapter, {"call_timeout": call_timeout} if call_timeout else {}
        self._settings = {"threads": threads, "device": device, "deterministic": deterministic}
        self._start()
        self._names = itertools.count()

    def _start(self) -> None:
        self.worker = WorkerClient(self.framework, self._adapter, log_dir=self.workdir, **self._options)
        # setup is part of bringing the worker up (its first use of the framework): it gets the
        # start-up allowance, not the per-request --timeout, which a loaded machine can exceed
        self.environment = self.worker.call("setup", timeout=DEFAULT_STARTUP_TIMEOUT, **self._settings)

    def restart(self) -> None:
        """A fresh worker with the same settings.  Freeing a model does not give back what a
        framework keeps beside it (traced graphs, allocator pools): across many big models a
        long-lived TF worker grew past 10 GB.  Models built before are gone."""
        self.worker.close()
        self._start()

    def resident_bytes(self) -> int | None:
        return self.worker.resident_bytes()

    def close(self) -> None:
        self.worker.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def scratch(self, stem: str, suffix: str) -> str:
        return str(self.workdir / f"{stem}-{next(self._names)}{suffix}")

    # -- models ---------------------------------------------------------------
    def build(self, factory: str, model: str, config: dict | None = None, seed: int = 0, handle: str | None = None,
              dtype: str = "float32") -> BuiltModel:
        handle = handle or f"{model}-{next(self._names)}"
        info = self.worker.call("build", handle=handle, factory=factory, model=model, config=config or {}, seed=seed,
                                dtype=dtype)
        weights = {name: tuple(shape) for name, shape in info["weights"].items()}
        return BuiltModel(self, handle, weights, info["parameters"], info["layers"])

    def save_weights(self, model: BuiltModel, path: str | None = None, metadata: dict | None = None) -> tuple[str, str]:
        path = path or self.scratch(f"{model.handle}-weights", ".safetensors")
        digest = self.worker.call("save_weights", handle=model.handle, path=str(path), metadata=metadata or {})["digest"]
        return str(path), digest

    def load_weights(self, model: BuiltModel, path: str) -> dict:
        return self.worker.call("load_weights", handle=model.handle, path=str(path))

    def load_native(self, model: BuiltModel, path: str) -> dict:
        """The framework's own weights file (torch state_dict checkpoint, Keras ``.weights.h5``)."""
        return self.worker.call("load_native", handle=model.handle, path=str(path))

    def save_native(self, model: BuiltModel, path: str) -> str:
        self.worker.call("save_native", handle=model.handle, path=str(path))
        return str(path)

    def free(self, model: BuiltModel) -> None:
        self.worker.call("free", handle=model.handle)

    # -- passes ---------------------------------------------------------------
    def _exchange(self, op: str, model: BuiltModel, arrays: Mapping, keep: bool = False, **args) -> tuple[Mapping, dict]:
        """Call ``op`` on ``arrays``; answer its result arrays and its reply.  An :class:`ArrayFile`
        is passed on by its path, not rewritten; with ``keep`` the result stays on disk, as an
        ArrayFile read one array at a time (the caller closes it)."""
        given = isinstance(arrays, ArrayFile)
        source = arrays.path if given else self.scratch(f"{model.handle}-{op}-in", ".npz")
        target = self.scratch(f"{model.handle}-{op}-out", ".npz")
        if not given:
            save_arrays(source, arrays)
        key = "reference_path" if op == "forward_isolated" else "input_path"
        kept = False
        try:
            info = self.worker.call(op, handle=model.handle, output_path=target, **{key: source}, **args)
            result = ArrayFile(target) if keep else load_arrays(target)
            kept = keep
            return result, info
        finally:  # exchange files are transient; big models would fill the disk
            discard(*(() if given else (source,)), *(() if kept else (target,)))

    def forward(self, model: BuiltModel, x: np.ndarray, capture: bool = False, keep: bool = False) -> tuple[Mapping, list[str]]:
        arrays, info = self._exchange("forward", model, {INPUT_ARRAY: x}, keep=keep, capture=capture)
        return arrays, info["layers"]

    def forward_isolated(self, model: BuiltModel, reference: Mapping, layers: list[str]) -> dict:
        """Each layer alone on ``reference``'s captured inputs (a kept forward's ArrayFile goes as it is)."""
        return self._exchange("forward_isolated", model, reference, layers=list(layers))[0]

    def gradients(self, model: BuiltModel, x: np.ndarray, targets, loss="cross_entropy") -> dict:
        """``targets``: one array per output (a bare array for one output); ``loss``: a kind, or one per output."""
        targets = targets if isinstance(targets, (list, tuple)) else [targets]
        arrays = {INPUT_ARRAY: x, **{target_key(i): t for i, t in enumerate(targets)}}
        return self._exchange("gradients", model, arrays, loss=loss if isinstance(loss, str) else list(loss))[0]

    def export_onnx(self, model: BuiltModel, input_shape, path: str | None = None, opset: int = 18, **options) -> tuple[str, dict]:
        path = path or self.scratch(f"{model.handle}", ".onnx")
        info = self.worker.call("export_onnx", handle=model.handle, path=str(path), input_shape=list(input_shape), opset=opset, **options)
        return str(path), info


def discard(*paths: str) -> None:
    """Remove scratch files (missing ones are fine)."""
    for path in paths:
        Path(path).unlink(missing_ok=True)


class OnnxRuntimeRunner:
    """onnxruntime on the CPU provider with every graph optimisation off and one thread:
    the baseline against which optimised or GPU sessions can later be judged."""

    def __init__(self, path: str, threads: int = 1, optimization: str = "ORT_DISABLE_ALL",
                 providers: tuple[str, ...] = ("CPUExecutionProvider",)):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, optimization)
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = threads
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        self.session = ort.InferenceSession(str(path), options, providers=list(providers))
        self.settings = {"optimization": optimization, "threads": threads, "providers": list(providers),
                         "onnxruntime": ort.__version__}

    def infer(self, x: np.ndarray) -> dict[str, np.ndarray]:
        (feed,) = self.session.get_inputs()
        results = self.session.run(None, {feed.name: x})
        return {output_key(i): np.asarray(r) for i, r in enumerate(results)}
