"""The frameworks twinframe drives: one row each, data only (module paths are strings).

Everything that differs between frameworks outside their adapters and twins is a field here:
runners, training backends, the zoo, port, the CLIs, demo, bench and compare read this table,
so a third framework is one more row (and its adapter, twins and trainer).

Two kinds of row: twins (torch, tf: two implementations, the default matrix of every check) and
backends (``backend_of``): the same Keras twins run by Keras 3 on another backend, JAX or torch,
each in a worker of its own.  ``names()`` is the default matrix; ``every()`` adds the backends.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import sys
from dataclasses import dataclass

from parity.protocol import Adapter, load_adapter


@dataclass(frozen=True)
class Framework:
    name: str  # the key everywhere: --framework, reports, run records
    title: str  # how people call it, in messages
    adapter: str  # "module:Class" of its parity.protocol.Adapter, imported only in this framework's process
    model_factory: str  # "package:function" building the zoo twins
    training: str  # the trainer module of training runs
    distributed: str | None  # its data-parallel engine module (an Engine: rank, size, collectives); None: none
    launcher: str | None  # "module:function" that starts `run.py --nproc N`'s ranks and supervises them (repro/launch.py)
    native_suffix: str  # the suffix of its own checkpoint files (`python -m parity port`)
    modules: tuple[str, ...]  # the numeric libraries (top-level modules) a process of it loads: torch, tensorflow, jax
    packages: tuple[str, ...]  # distributions whose versions a run record keeps
    environment: tuple[tuple[str, str], ...] = ()  # set before it is imported (a user's value wins)
    replicas_per_process: bool = False  # its engine spreads one process over several devices (--replicas)
    sync_batchnorm_on_cpu: bool = False  # its synchronized BatchNorm (--sync-batchnorm) runs on CPU too
    backend_of: str | None = None  # a backend row: the framework whose twins (model factory, trainer) it runs
    onnx_unavailable: str | None = None  # why it exports no ONNX file here (None: it does)

    # Loading either imports the framework: only in the one process that is to hold it.
    def load_adapter(self) -> Adapter:
        keep_out_others(self.name)
        return load_adapter(self.adapter)

    def load_training(self):
        return importlib.import_module(self.training)


FRAMEWORKS: dict[str, Framework] = {
    row.name: row
    for row in (
        Framework("torch", "PyTorch", "parity.adapters.torch_adapter:TorchAdapter", "impl_torch:create_model",
                  "impl_torch.training", "impl_torch.distributed", "impl_torch.distributed:launch", ".pth",
                  modules=("torch",), packages=("torch",)),
        Framework("tf", "TensorFlow/Keras", "parity.adapters.tf_adapter:TfAdapter", "impl_tf:create_model",
                  "impl_tf.training", "impl_tf.distributed", "repro.launch:tf_config_workers", ".weights.h5",
                  modules=("tensorflow",), packages=("tensorflow", "keras"),
                  environment=(("KERAS_BACKEND", "tensorflow"),), replicas_per_process=True,
                  sync_batchnorm_on_cpu=True),
        # Keras' twins on JAX: float64 needs x64 on; XLA's CPU pool is one thread (fixed at JAX's start)
        Framework("keras-jax", "Keras 3 on JAX", "parity.adapters.keras_jax_adapter:KerasJaxAdapter",
                  "impl_tf:create_model", "impl_tf.training", None, None, ".weights.h5",
                  modules=("jax",), packages=("jax", "jaxlib", "keras"), backend_of="tf",
                  onnx_unavailable="it needs jax2onnx, which twinframe does not install (it brings flax, orbax and a "
                                   "CPU onnxruntime that replaces onnxruntime-gpu); the Keras twin's ONNX file comes "
                                   "from framework tf or keras-torch",
                  environment=(("KERAS_BACKEND", "jax"), ("JAX_ENABLE_X64", "1"),
                               ("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"))),
        Framework("keras-torch", "Keras 3 on PyTorch", "parity.adapters.keras_torch_adapter:KerasTorchAdapter",
                  "impl_tf:create_model", "impl_tf.training", None, None, ".weights.h5",
                  modules=("torch",), packages=("torch", "keras"), backend_of="tf",
                  environment=(("KERAS_BACKEND", "torch"),)),
    )
}
# The reference side: parity transfers its weights to the others, port reads its checkpoints by
# default, and both frameworks' parity-mode training runs start from its initialisation.
REFERENCE = "torch"


def names() -> tuple[str, ...]:
    """The default matrix: the reference and the twins judged against it."""
    return tuple(name for name, row in FRAMEWORKS.items() if row.backend_of is None)


def every() -> tuple[str, ...]:
    """Every row: the default matrix and the backend rows."""
    return tuple(FRAMEWORKS)


def backends() -> tuple[str, ...]:
    """The backend rows: a twin's own code on another backend."""
    return tuple(name for name, row in FRAMEWORKS.items() if row.backend_of is not None)


def candidates() -> tuple[str, ...]:
    """The twins of the default matrix judged against the reference."""
    return tuple(name for name in names() if name != REFERENCE)


def judged() -> tuple[str, ...]:
    """Every row judged against the reference (the candidates and the backend rows)."""
    return tuple(name for name in FRAMEWORKS if name != REFERENCE)


def get(name: str) -> Framework:
    try:
        return FRAMEWORKS[name]
    except KeyError:
        raise ValueError(f"unknown framework {name!r}; known: {', '.join(FRAMEWORKS)}") from None


def model_factories() -> dict[str, str]:
    return {row.name: row.model_factory for row in FRAMEWORKS.values()}


# What every framework process sets before its import, where the user has not: deterministic
# kernels, no oneDNN reordering in TF, quiet logs.
DETERMINISTIC_ENV = {
    "TF_ENABLE_ONEDNN_OPTS": "0",
    "TF_DETERMINISTIC_OPS": "1",
    "TF_CPP_MIN_LOG_LEVEL": "2",
    "CUBLAS_WORKSPACE_CONFIG": ":4096:8",
    "PYTHONHASHSEED": "0",
    "PYTHONUNBUFFERED": "1",
}


def process_environment(name: str, deterministic: bool = True) -> dict[str, str]:
    """The environment a process of framework ``name`` starts with (a worker, or a training run)."""
    return {**(DETERMINISTIC_ENV if deterministic else {}), **environment(name)}


def environment(name: str) -> dict[str, str]:
    """What a process of this framework sets before importing it (nothing for an unknown name:
    a user's own adapter under its own name)."""
    return dict(FRAMEWORKS[name].environment) if name in FRAMEWORKS else {}


def libraries() -> list[str]:
    """Every numeric library a row loads (torch, tensorflow, jax)."""
    return sorted({m for row in FRAMEWORKS.values() for m in row.modules})


class _KeptOut:
    """An import finder and loader that refuses the libraries of other rows in this process.  It
    finds them (a spec without an origin, so ``importlib.util.find_spec`` probes, as torch's
    dynamo makes, do not fail) and fails their import: Keras' ``tf.available`` then reads False."""

    def __init__(self, framework: str, refused: tuple[str, ...]):
        self.framework, self.refused = framework, refused

    def find_spec(self, name, path=None, target=None):
        return importlib.machinery.ModuleSpec(name, self) if name.split(".")[0] in self.refused else None

    def create_module(self, spec):
        raise ModuleNotFoundError(f"twinframe keeps {spec.name.split('.')[0]} out of this {self.framework} process "
                                  "(one numeric library per process: docs/architecture.md)", name=spec.name)

    def exec_module(self, module):  # never reached: create_module refuses
        raise ModuleNotFoundError(module.__name__)


def keep_out_others(name: str) -> None:
    """Make the other rows' numeric libraries unimportable in this process, before its own is
    loaded: a library that imports one merely because it is installed (Keras' ``tf.available``
    checks on every backend, docs/pitfalls.md entry 45) then finds it absent, as it would on a
    machine without it.  Libraries already loaded are left (nothing here unloads a module)."""
    if name not in FRAMEWORKS or any(isinstance(f, _KeptOut) for f in sys.meta_path):
        return
    refused = tuple(library for library in libraries() if library not in FRAMEWORKS[name].modules)
    sys.meta_path.insert(0, _KeptOut(name, refused))


def loaded(modules) -> list[str]:
    """The numeric libraries (torch, tensorflow, jax) among ``modules`` (e.g. ``sys.modules``): a
    run's proof that it held its framework's only (``Framework.modules``).  Keras itself is not
    among them: it is a front end, the library under it is what must never meet another."""
    return [library for library in libraries() if library in modules]
