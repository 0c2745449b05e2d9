"""Keras 3 on the torch backend: the parity protocol's Keras adapter with torch's settings,
gradients (autograd: the backend's variables are torch parameters) and ONNX export
(torch.onnx through Keras' exporter).  Imported only in a worker whose ``KERAS_BACKEND`` is
torch: it never loads TensorFlow.
"""

from __future__ import annotations

import platform

import keras
import numpy as np
import torch

from parity.adapters.keras_adapter import KerasAdapter, keep_float64


def _parameter_key(path: str) -> str:
    return path.replace(".", "\N{ONE DOT LEADER}")


def allow_dotted_layer_names() -> None:
    """Keras' torch backend registers each layer's variables as torch parameters keyed by the
    variable's path; torch refuses a parameter name with a dot, so a layer named as its torch
    module ("layer1.0.conv1", the canonical name) cannot be built (KeyError: parameter name can't
    contain "."; Keras 3.15).  The keys are only the torch module's own bookkeeping: here they
    keep the path with each dot written as a one-dot leader."""
    from keras.src.backend.torch.layer import TorchLayer

    if getattr(TorchLayer, "_twinframe_dotted_names", False):
        return

    def track(self):
        self._torch_params = torch.nn.ParameterDict({_parameter_key(v.path): v.value for v in self.variables})

    def post_track(self, variable):
        if hasattr(self, "_torch_params") and _parameter_key(variable.path) not in self.torch_params:
            self.torch_params[_parameter_key(variable.path)] = variable.value

    def post_untrack(self, variable):
        if hasattr(self, "_torch_params") and _parameter_key(variable.path) in self.torch_params:
            self.torch_params.pop(_parameter_key(variable.path))

    TorchLayer._track_variables, TorchLayer._post_track_variable = track, post_track
    TorchLayer._post_untrack_variable, TorchLayer._twinframe_dotted_names = post_untrack, True


def two_pass_moments() -> None:
    """Keras' batch statistics on torch in two passes, as on TensorFlow and JAX.

    Keras 3.15's torch backend computes ``ops.moments``' variance in one pass, E[x^2] - E[x]^2
    (its comment: "faster but less numerically stable"); TensorFlow's backend uses tf.nn.moments
    and JAX's jnp.var, both mean((x - mean)^2), and so does torch's own BatchNorm.  In float32
    the one-pass form cancels where a channel's mean is large against its spread: on DenseNet-121
    it made Keras-on-torch's own float32 gradient four times torch's own error (docs/pitfalls.md,
    entry 46).  Here BatchNormalization (and every other ops.moments) takes the variance in
    two passes, in this worker and in a training run on this backend (both start this adapter);
    float16 and bfloat16 keep Keras' own path."""
    from keras.src.backend.torch import nn

    one_pass = getattr(nn.moments, "_twinframe_one_pass", nn.moments)

    def moments(x, axes, keepdims=False, synchronized=False):
        x = nn.convert_to_tensor(x)
        if synchronized or x.dtype in (torch.float16, torch.bfloat16):
            return one_pass(x, axes, keepdims, synchronized)
        dims = tuple(axes) if isinstance(axes, (list, tuple)) else (axes,)
        variance, mean = torch.var_mean(x, dim=dims, correction=0, keepdim=keepdims)
        return mean, variance

    moments._twinframe_one_pass = one_pass
    nn.moments = moments
    if keras.src.backend.nn.moments is not moments:
        raise RuntimeError(f"Keras {keras.__version__}: keras.src.backend.nn is not the torch backend's nn module, so "
                           "twinframe could not give BatchNormalization two-pass statistics (docs/pitfalls.md, entry 46)")


def _batch_moments() -> str:
    """How this process's ops.moments takes a variance: read from the function, not assumed."""
    from keras.src.backend import nn

    if hasattr(nn.moments, "_twinframe_one_pass"):
        return "two-pass (docs/pitfalls.md, entry 46)"
    return "one-pass (Keras' own)"


class KerasTorchAdapter(KerasAdapter):
    framework, backend = "keras-torch", "torch"

    def setup(self, threads: int = 1, device: str = "cpu", deterministic: bool = True) -> dict:
        self.check_backend()
        keep_float64()  # Keras would compute float64 in float32 here
        if device != "cpu" and not torch.cuda.is_available():
            raise RuntimeError(f"device {device!r} requested but torch sees no GPU")
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic)
        torch.backends.cudnn.benchmark = False
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False  # TF32 breaks float32 parity
        from keras.src.backend.common import global_state

        global_state.set_global_attribute("torch_device", "cuda" if device != "cpu" else "cpu")
        allow_dotted_layer_names()
        two_pass_moments()
        self._settings.update(device=device, threads=threads, deterministic=deterministic)
        return self.environment()

    def environment(self) -> dict:
        return {
            "framework": self.framework,
            "versions": {"torch": torch.__version__, "keras": keras.__version__, "numpy": np.__version__,
                         "python": platform.python_version()},
            "threads": {"intra_op": torch.get_num_threads(), "inter_op": torch.get_num_interop_threads()},
            "device": self._settings["device"],
            "device_name": torch.cuda.get_device_name(0) if self._settings["device"] != "cpu"
            else platform.processor() or "cpu",
            "flags": {"keras_backend": keras.backend.backend(), "batch_moments": _batch_moments(),
                      "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
                      "tf32": torch.backends.cuda.matmul.allow_tf32},
        }

    def differentiate(self, loss_of, variables, inputs, state):
        given = [x.detach().clone().requires_grad_(True) for x in inputs]
        value = loss_of(given)
        targets = [v.value for v in variables] + given
        grads = torch.autograd.grad(value, targets, allow_unused=True)
        return value.detach(), list(grads[:len(variables)]), list(grads[len(variables):])
