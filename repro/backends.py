"""The framework side of a training run: model, trainer, canonical weights and ONNX export.

Exactly one backend is loaded per process (docs/architecture.md: never torch and TensorFlow in one
process); its framework is imported only when it is chosen.  Building, seeding, determinism
settings, canonical weights and ONNX export reuse the parity adapters, so a run's weight
files are the same canonical safetensors that parity compares.
"""

from __future__ import annotations

import importlib
import os

from parity import frameworks
from repro.recipes import Recipe

HANDLE = "run"


class Backend:
    """``distributed``: join the data-parallel run the launcher's environment describes (or, in
    TensorFlow, spread ``replicas`` over this process's devices): its engine, from the framework's
    ``distributed`` module, shards every step's batch.  Only rank 0 writes weights."""

    def __init__(self, framework: str, threads: int = 1, device: str = "cpu", deterministic: bool = True,
                 distributed: bool = False, replicas: int = 1, timeout_s: float = 300.0,
                 sync_batchnorm: bool = False):
        row = frameworks.get(framework)
        for key, value in frameworks.process_environment(framework, deterministic).items():  # before its import
            os.environ.setdefault(key, value)
        self.framework, self.factory, self.precision = framework, row.model_factory, "float32"
        self.row = row
        self.adapter, self.training = row.load_adapter(), row.load_training()  # this framework, this process only
        self.environment = self.adapter.setup(threads=threads, device=device, deterministic=deterministic)
        self.engine = None
        if distributed or replicas > 1:  # after the setup, before any model: the strategy's scope holds them
            self.engine = importlib.import_module(row.distributed).Engine(device, timeout_s, replicas, sync_batchnorm)
            self.environment["distributed"] = self.engine.describe()
        self.writes = self.engine is None or self.engine.rank == 0

    def barrier(self) -> None:
        if self.engine is not None:
            self.engine.barrier()

    def close(self) -> None:
        if self.engine is not None:
            self.engine.close()

    def build(self, model: str, config: dict, seed: int, precision: str = "float32") -> dict:
        """Seed everything (Python, NumPy, framework) and build the model in the dtype the
        trainer builds this precision in (``training.build_dtype``)."""
        self.precision, self._built = precision, (model, config, seed)
        return self.adapter.build(HANDLE, self.factory, model, config, seed, dtype=self.training.build_dtype(precision))

    @property
    def net(self):
        return self.adapter.model(HANDLE)

    def trainer(self, recipe: Recipe, dropout: bool = True):
        # a backend row's trainer differentiates through its adapter: the twin's package knows
        # only its own framework's autodiff (impl_tf/training.py)
        backend_options = {"differentiate": self.adapter.differentiate} if self.row.backend_of else {}
        return self.training.Trainer(self.net, recipe.optimizer, recipe.loss, recipe.label_smoothing,
                                     head_only=recipe.procedure == "linear_probing", precision=self.precision,
                                     dropout=dropout, frozen_train_mode="linear_probing_train_mode" in recipe.quirks,
                                     engine=self.engine, **backend_options)

    def save_weights(self, path: str, metadata: dict | None = None) -> str | None:
        """The weights' digest; on a rank other than 0 nothing is written (None)."""
        if not self.writes:
            return None
        return self.adapter.save_weights(HANDLE, path, metadata)["digest"]

    def load_weights(self, path: str) -> None:
        self.adapter.load_weights(HANDLE, path)

    def export_onnx(self, path: str, input_shape: list[int]) -> dict:
        """The model's ONNX file, always a float32 model: a bfloat16 Keras model computes in
        bfloat16, which ONNX Conv does not take, and onnxruntime's CPU Conv has no float64
        kernel; those are exported as their float32 twin holding the same weights."""
        if self.precision in self.training.EXPORTED_AS_BUILT:
            return self.adapter.export_onnx(HANDLE, path, input_shape)
        import tempfile

        model, config, seed = self._built
        twin = HANDLE + "-float32"
        self.adapter.build(twin, self.factory, model, config, seed, dtype="float32")
        try:
            with tempfile.TemporaryDirectory() as scratch:
                self.save_weights(f"{scratch}/weights.safetensors")
                self.adapter.load_weights(twin, f"{scratch}/weights.safetensors")
            return self.adapter.export_onnx(twin, path, input_shape)
        finally:
            self.adapter.free(twin)
