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
from parity.protocol import ArrayFile, input_arrays, load_arrays, onnx_input_name, output_key, save_arrays, target_key
from parity.worker import DEFAULT_STARTUP_TIMEOUT, WorkerClient



@dataclass
class BuiltModel:
    """A model living in a worker, with what its twin must agree on."""

    runner: "FrameworkRunner"
    handle: str
    weights: dict[str, tuple[int, ...]]
    parameters: int
    layers: list[str] = field(default_factory=list)  # its leaf layers
    modules: list[dict] = field(default_factory=list)  # every named module: name, kind, weights, leaf, config
    # canonical tensors its mapping adds together (torch's two RNN biases into Keras' one)
    lossy: list[list[str]] = field(default_factory=list)


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
              dtype: str = "float32", inputs: list[dict] | None = None) -> BuiltModel:
        """``inputs``: ``{shape, dtype, layout}`` per model input (a model that builds on first call needs them)."""
        handle = handle or f"{model}-{next(self._names)}"
        info = self.worker.call("build", handle=handle, factory=factory, model=model, config=config or {}, seed=seed,
                                dtype=dtype, **({"inputs": inputs} if inputs else {}))
        weights = {name: tuple(shape) for name, shape in info["weights"].items()}
        return BuiltModel(self, handle, weights, info["parameters"], info["layers"], info.get("modules", []),
                          info.get("lossy", []))

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

    def forward(self, model: BuiltModel, inputs, capture: bool | list = False, keep: bool = False) -> tuple[Mapping, list[str]]:
        """``inputs``: the model's input array, or a list of them; ``capture``: the layers to record
        (a list of names, True for every leaf)."""
        arrays, info = self._exchange("forward", model, input_arrays(inputs), keep=keep, capture=capture)
        return arrays, info["layers"]

    def forward_isolated(self, model: BuiltModel, reference: Mapping, layers: list[str]) -> tuple[dict, dict]:
        """Each layer alone on ``reference``'s captured inputs (a kept forward's ArrayFile goes as it
        is).  Answers the outputs and ``{layer: why}`` for the layers that cannot be run alone."""
        arrays, info = self._exchange("forward_isolated", model, reference, layers=list(layers))
        return arrays, info.get("not_isolated", {})

    def gradients(self, model: BuiltModel, inputs, targets, loss="cross_entropy", capture: list | None = None) -> dict:
        """``targets``: one array per output (a bare array for one output); ``loss``: a kind, or one
        per output; ``capture``: layers whose inputs in this train-mode pass are written too."""
        targets = targets if isinstance(targets, (list, tuple)) else [targets]
        arrays = {**input_arrays(inputs), **{target_key(i): t for i, t in enumerate(targets)}}
        extra = {"capture": list(capture)} if capture else {}
        return self._exchange("gradients", model, arrays, loss=loss if isinstance(loss, str) else list(loss), **extra)[0]

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

    def infer(self, inputs) -> dict[str, np.ndarray]:
        """``inputs``: one array or a list, fed to the inputs named by ``onnx_input_name``."""
        inputs = [inputs] if isinstance(inputs, np.ndarray) else list(inputs)
        feeds = {feed.name: feed for feed in self.session.get_inputs()}
        names = [onnx_input_name(i, len(inputs)) for i in range(len(inputs))]
        if len(feeds) != len(inputs) or set(names) - set(feeds):
            # an exporter may drop an input the graph does not use, or name a lone input its own way
            names = [feed.name for feed in self.session.get_inputs()] if len(feeds) == len(inputs) else names
        results = self.session.run(None, {name: x for name, x in zip(names, inputs) if name in feeds})
        return {output_key(i): np.asarray(r) for i, r in enumerate(results)}
