"""The framework side of a training run: model, trainer, canonical weights and ONNX export.

Exactly one backend is loaded per process (docs/architecture.md: never torch and TensorFlow in one
process); its framework is imported only when it is chosen.  Building, seeding, determinism
settings, canonical weights and ONNX export reuse the parity adapters, so a run's weight
files are the same canonical safetensors that parity compares.
"""

from __future__ import annotations

import importlib
import os

from parity.worker import DETERMINISTIC_ENV
from spec.recipes import Recipe, model_dtype

FRAMEWORKS = {
    "torch": ("parity.adapters.torch_adapter", "impl_torch:create_model", "impl_torch.training"),
    "tf": ("parity.adapters.keras_adapter", "impl_tf:create_model", "impl_tf.training"),
}
HANDLE = "run"


class Backend:
    def __init__(self, framework: str, threads: int = 1, device: str = "cpu", deterministic: bool = True):
        if framework not in FRAMEWORKS:
            raise ValueError(f"unknown framework {framework!r}; choose from {sorted(FRAMEWORKS)}")
        if deterministic:
            for key, value in DETERMINISTIC_ENV.items():  # before the framework is imported
                os.environ.setdefault(key, value)
        adapter, self.factory, training = FRAMEWORKS[framework]
        self.framework, self.precision = framework, "float32"
        self.adapter = importlib.import_module(adapter)
        self.training = importlib.import_module(training)
        self.environment = self.adapter.setup(threads=threads, device=device, deterministic=deterministic)

    def build(self, model: str, config: dict, seed: int, precision: str = "float32") -> dict:
        """Seed everything (Python, NumPy, framework) and build the model.  Keras fixes a model's
        compute dtype when it is built, so bfloat16 is chosen here for TF; torch builds in
        float32 and autocasts in the trainer."""
        self.precision, self._built = precision, (model, config, seed)
        dtype = self.training.MIXED_POLICY if precision == "bfloat16" and self.framework == "tf" \
            else model_dtype(precision)
        return self.adapter.build(HANDLE, self.factory, model, config, seed, dtype=dtype)

    @property
    def net(self):
        return self.adapter.get_model(HANDLE)

    def trainer(self, recipe: Recipe, dropout: bool = True):
        return self.training.Trainer(self.net, recipe.optimizer, recipe.loss, recipe.label_smoothing,
                                     head_only=recipe.procedure == "linear_probing", precision=self.precision,
                                     dropout=dropout)

    def save_weights(self, path: str, metadata: dict | None = None) -> str:
        return self.adapter.save_weights(HANDLE, path, metadata)["digest"]

    def load_weights(self, path: str) -> None:
        self.adapter.load_weights(HANDLE, path)

    def export_onnx(self, path: str, input_shape: list[int]) -> dict:
        """The model's ONNX file, always a float32 model: a bfloat16 Keras model computes in
        bfloat16, which ONNX Conv does not take, and onnxruntime's CPU Conv has no float64
        kernel; those are exported as their float32 twin holding the same weights."""
        if self.precision == "float32" or (self.precision == "bfloat16" and self.framework == "torch"):
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
