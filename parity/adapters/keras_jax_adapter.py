"""Keras 3 on the JAX backend: the parity protocol's Keras adapter with JAX's settings and
gradients.  Imported only in a worker whose ``KERAS_BACKEND`` is jax (never beside torch).

float64 needs ``jax_enable_x64`` (the framework row sets ``JAX_ENABLE_X64``): without it JAX makes
every float64 array float32 without a word, and a "float64" check would compare float32 runs.
"""

from __future__ import annotations

import os
import platform

import jax
import keras
import numpy as np

from parity.adapters.keras_adapter import KerasAdapter, keep_float64


class KerasJaxAdapter(KerasAdapter):
    framework, backend = "keras-jax", "jax"

    def setup(self, threads: int = 1, device: str = "cpu", deterministic: bool = True) -> dict:
        self.check_backend()
        if not jax.config.jax_enable_x64:
            raise RuntimeError("JAX runs without float64 (jax_enable_x64 off): set JAX_ENABLE_X64=1")
        keep_float64()  # Keras would compute float64 in float32 here
        if device != "cpu" and not any(d.platform == "gpu" for d in jax.devices()):
            raise RuntimeError(f"device {device!r} requested but JAX sees no GPU")
        # XLA's CPU thread pool is fixed when JAX starts (XLA_FLAGS of the framework row)
        self._settings.update(device=device, threads=threads, deterministic=deterministic)
        return self.environment()

    def environment(self) -> dict:
        devices = jax.devices()
        return {
            "framework": self.framework,
            "versions": {"jax": jax.__version__, "keras": keras.__version__, "numpy": np.__version__,
                         "python": platform.python_version()},
            "threads": {"xla_flags": os.environ.get("XLA_FLAGS", "")},
            "device": self._settings["device"],
            "device_name": str(devices[0].device_kind) if devices else platform.processor() or "cpu",
            "flags": {"keras_backend": keras.backend.backend(), "jax_enable_x64": bool(jax.config.jax_enable_x64),
                      "deterministic": self._settings["deterministic"], "jit_compile": False},
        }

    def differentiate(self, loss_of, variables, inputs, state):
        """The loss as a pure function of the variables' and inputs' values (Keras' StatelessScope
        reads the given values and keeps the pass's assignments), differentiated by jax.grad."""

        def pure(values, given):
            with keras.StatelessScope(state_mapping=list(zip(variables, values))) as scope:
                value = loss_of(given)
            return value, [scope.get_current_value(v) for v in state]

        (value, assigned), (grads, input_grads) = jax.value_and_grad(pure, argnums=(0, 1), has_aux=True)(
            [v.value for v in variables], list(inputs))
        for variable, new in zip(state, assigned):
            if new is not None:
                variable.assign(new)
        return value, list(grads), list(input_grads)

    def export_onnx(self, handle: str, path: str, input_shape: list[int], opset: int = 18, exporter: str = "jax2onnx",
                    inputs: list[dict] | None = None) -> dict:
        from parity import frameworks

        raise NotImplementedError(f"no ONNX export on {frameworks.get(self.framework).title}: "
                                  f"{frameworks.get(self.framework).onnx_unavailable}")
