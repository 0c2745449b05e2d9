"""PyTorch side of the parity protocol (imported only in a process that holds torch).

Canonical weights are the model's ``state_dict`` (minus ``num_batches_tracked``).
Compared layers are the leaf modules, in the order they run.
"""

from __future__ import annotations

import pickle
import platform
import random

import numpy as np
import torch

from parity import protocol
from parity.adapters import common
from parity.protocol import Adapter, grad_key, input_key, layer_key, load_arrays, output_key, save_arrays, state_key
from canon.files import atomic_write
from canon.weights import WeightTransfer, load_canonical, save_canonical

NOT_WEIGHTS = ("num_batches_tracked",)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # seeds CUDA too


# -- canonical weights -------------------------------------------------------

def canonical_weights(net: torch.nn.Module) -> dict[str, np.ndarray]:
    return {
        name: value.detach().cpu().numpy().copy()
        for name, value in net.state_dict().items()
        if not name.endswith(NOT_WEIGHTS)
    }


def _assign(net: torch.nn.Module, tensors: dict[str, np.ndarray], target: str) -> dict:
    """Every slot once, every source tensor used, shapes equal: checked before anything is written."""
    transfer = WeightTransfer(tensors, target=target)
    slots = {n: t for n, t in net.state_dict().items() if not n.endswith(NOT_WEIGHTS)}
    for name, tensor in slots.items():
        transfer.expect(name, tuple(tensor.shape))
    transfer.check()
    with torch.no_grad():
        for name, tensor in slots.items():
            tensor.copy_(torch.from_numpy(transfer.take(name)))
    return transfer.finish()


def _state_dict_from(obj, path: str) -> dict:
    """A plain state_dict, or one wrapped as training checkpoints wrap it."""
    for key in ("state_dict", "model_state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(f"{path}: not a torch state_dict (a dict of tensors)")
    return {common.checkpoint_key(key): value for key, value in obj.items()}


# -- forward passes ----------------------------------------------------------

def _leaf_modules(net: torch.nn.Module):
    return [(name, m) for name, m in net.named_modules() if name and not any(True for _ in m.children())]


def _own_weights(name: str, module: torch.nn.Module) -> list[str]:
    """The canonical names of what ``module`` holds itself (not its children's)."""
    own = [n for n, p in module._parameters.items() if p is not None]
    own += [n for n, b in module._buffers.items()
            if b is not None and n not in module._non_persistent_buffers_set and not n.endswith(NOT_WEIGHTS)]
    return [f"{name}.{n}" if name else n for n in own]


def _config(module: torch.nn.Module) -> dict:
    """A module's public settings (kernel_size, eps, momentum, approximate, ...), JSON-ready."""
    plain = (int, float, str, bool, type(None))
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(module).items()
            if not k.startswith("_") and (isinstance(v, plain) or (isinstance(v, tuple) and all(isinstance(i, plain) for i in v)))}


def _modules(net: torch.nn.Module) -> list[dict]:
    return [{"name": name, "kind": type(m).__name__, "weights": _own_weights(name, m),
             "leaf": not any(True for _ in m.children()), "config": _config(m)} for name, m in net.named_modules()]


BUILT_DTYPE = "_twinframe_dtype"  # the attribute a built model keeps its build dtype in


def _to_numpy(value) -> np.ndarray:
    return value.detach().cpu().numpy()


def _flatten(value) -> list[torch.Tensor]:
    """A module's or model's output as a flat list of tensors (dicts by sorted key, as Keras')."""
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, dict):
        return [t for key in sorted(value) for t in _flatten(value[key])]
    if isinstance(value, (tuple, list)):
        return [t for item in value for t in _flatten(item)]
    return []


def _outputs(result) -> dict[str, np.ndarray]:
    return {output_key(i): _to_numpy(r) for i, r in enumerate(_flatten(result))}


def _tensor(array: np.ndarray, device: str, like: torch.nn.Module | None = None) -> torch.Tensor:
    """Array -> tensor on the device; floating arrays take the dtype the model was built in (a
    model without parameters too: it has no parameter to tell)."""
    tensor = torch.from_numpy(np.ascontiguousarray(array)).to(device)
    if like is not None and tensor.is_floating_point():
        built = getattr(like, BUILT_DTYPE, None)
        tensor = tensor.to(built or next((p.dtype for p in like.parameters()), torch.get_default_dtype()))
    return tensor


def _read_torch_save(path: str):
    try:
        return torch.load(path, map_location="cpu", weights_only=True)  # never runs pickled code
    except FileNotFoundError:
        raise FileNotFoundError(f"checkpoint not found: {path}") from None
    except (RuntimeError, EOFError, OSError, pickle.UnpicklingError) as error:
        raise ValueError(f"{path}: not a readable torch checkpoint ({str(error).splitlines()[0]})") from None


def _read_safetensors(path: str) -> dict:
    from safetensors.torch import load_file

    try:
        return load_file(path)
    except FileNotFoundError:
        raise FileNotFoundError(f"checkpoint not found: {path}") from None
    except Exception as error:  # safetensors reports corruption with several types
        raise ValueError(f"{path}: not a readable safetensors file ({str(error).splitlines()[0]})") from None


class _Recorder:
    """Forward hooks recording the named modules' first output and their inputs, once each."""

    def __init__(self, net: torch.nn.Module, names: list[str], with_inputs: bool):
        self.arrays: dict[str, np.ndarray] = {}
        self.order: list[str] = []
        self.with_inputs = with_inputs
        modules = dict(net.named_modules())
        unknown = [name for name in names if name not in modules]
        if unknown:
            raise KeyError(f"the torch model has no module(s) {unknown[:5]}")
        self.hooks = [modules[name].register_forward_hook(self._hook(name)) for name in names]

    def _hook(self, name):
        def record(module, inputs, output):
            if name in self.order:
                raise RuntimeError(
                    f"module {name!r} ran twice in one forward pass; layer-wise comparison "
                    "needs one module per call (e.g. relu1 and relu2, not one shared relu)"
                )
            self.order.append(name)
            first = _flatten(output)
            if first:
                self.arrays[layer_key(name)] = _to_numpy(first[0])
            if self.with_inputs:
                for i, x in enumerate(t for t in inputs if isinstance(t, torch.Tensor)):
                    self.arrays[input_key(name, i)] = _to_numpy(x)
        return record

    def close(self):
        for hook in self.hooks:
            hook.remove()


# -- gradients ---------------------------------------------------------------

def _loss(kind: str, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    functional = torch.nn.functional
    if kind == "cross_entropy":
        return functional.cross_entropy(output, target)
    if kind == "bce_logits":
        return functional.binary_cross_entropy_with_logits(output, target)
    if kind == "bce":
        return functional.binary_cross_entropy(output, target)
    return functional.mse_loss(output, target)


# -- the ops ------------------------------------------------------------------

class TorchAdapter(Adapter):
    framework = "torch"

    def __init__(self):
        self._models = common.Models()
        self._settings = {"device": "cpu", "threads": 1, "deterministic": True}

    @property
    def _device(self) -> str:
        return self._settings["device"]

    def setup(self, threads: int = 1, device: str = "cpu", deterministic: bool = True) -> dict:
        torch.set_num_threads(threads)
        try:
            torch.set_num_interop_threads(threads)
        except RuntimeError:  # may only be set before the first parallel op
            pass
        torch.use_deterministic_algorithms(deterministic)
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = deterministic
        torch.backends.cuda.matmul.allow_tf32 = False  # TF32 silently breaks float32 parity
        torch.backends.cudnn.allow_tf32 = False
        torch.set_float32_matmul_precision("highest")
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise RuntimeError(f"device {device!r} requested but torch sees no CUDA device")
        self._settings.update(device=device, threads=threads, deterministic=deterministic)
        return self.environment()

    def environment(self) -> dict:
        return {
            "framework": self.framework,
            "versions": {"torch": torch.__version__, "numpy": np.__version__, "python": platform.python_version()},
            "threads": {"intra_op": torch.get_num_threads(), "inter_op": torch.get_num_interop_threads()},
            "device": self._device,
            "device_name": torch.cuda.get_device_name() if self._device.startswith("cuda") else platform.processor() or "cpu",
            "flags": {
                "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
                "cudnn_benchmark": torch.backends.cudnn.benchmark,
                "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
                "tf32_cudnn": torch.backends.cudnn.allow_tf32,
            },
        }

    def build(self, handle: str, factory: str, model: str, config: dict, seed: int, dtype: str = "float32",
              inputs: list[dict] | None = None) -> dict:
        seed_everything(seed)
        net = common.load_factory(factory)(model, **config)
        net = net.to(device=self._device, dtype=getattr(torch, dtype)).eval()
        setattr(net, BUILT_DTYPE, getattr(torch, dtype))
        self._models.put(handle, net)
        weights = canonical_weights(net)
        return {
            "weights": {name: list(value.shape) for name, value in weights.items()},
            "parameters": int(sum(p.numel() for p in net.parameters())),
            "layers": [name for name, _ in _leaf_modules(net)],
            "modules": _modules(net),
        }

    def free(self, handle: str) -> None:
        self._models.drop(handle)

    def model(self, handle: str):
        """The framework model behind a handle (for in-process users such as repro/)."""
        return self._models.get(handle)

    def save_weights(self, handle: str, path: str, metadata: dict | None = None) -> dict:
        digest = save_canonical(path, canonical_weights(self._models.get(handle)), {"framework": self.framework, **(metadata or {})})
        return {"digest": digest}

    def load_weights(self, handle: str, path: str) -> dict:
        return _assign(self._models.get(handle), load_canonical(path), f"torch model {handle!r}")

    def load_native(self, handle: str, path: str) -> dict:
        """Load a torch checkpoint strictly, every key used: a ``torch.save`` file (torchvision's
        ``resnet18-*.pth``) or a ``.safetensors`` state dict (timm's ``model.safetensors``)."""
        net = self._models.get(handle)
        raw = _read_safetensors(path) if str(path).endswith(".safetensors") else _read_torch_save(path)
        state = _state_dict_from(raw, path)
        tensors = {k: v.detach().float().cpu().numpy() if v.dtype in (torch.bfloat16, torch.float16)
                   else v.detach().cpu().numpy() for k, v in state.items() if not k.endswith(NOT_WEIGHTS)}
        audit = _assign(net, tensors, f"torch model {handle!r} (from {path})")
        return {"tensors": len(tensors), "parameters": int(sum(p.numel() for p in net.parameters())), "audit": audit}

    def save_native(self, handle: str, path: str) -> dict:
        atomic_write(path, lambda target: torch.save(self._models.get(handle).state_dict(), target))
        return {"path": path}

    def forward(self, handle: str, input_path: str, output_path: str, capture: bool | list = False) -> dict:
        net = self._models.get(handle)
        data = load_arrays(input_path)
        inputs = [_tensor(x, self._device, like=net) for x in protocol.model_inputs(data)]
        names = [name for name, _ in _leaf_modules(net)] if capture is True else list(capture or [])
        recorder = _Recorder(net, names, with_inputs=True) if names else None
        try:
            with torch.no_grad():
                arrays = _outputs(net(*inputs))
        finally:
            if recorder:
                recorder.close()
        if recorder:
            arrays.update(recorder.arrays)
            arrays.update(protocol.input_arrays(protocol.model_inputs(data)))
        save_arrays(output_path, arrays)
        return {"layers": recorder.order if recorder else []}

    def forward_isolated(self, handle: str, reference_path: str, output_path: str, layers: list[str]) -> dict:
        """Run each layer alone on the reference framework's input to that layer."""
        net = self._models.get(handle)
        modules = dict(net.named_modules())
        reference = load_arrays(reference_path)
        arrays = {}
        with torch.no_grad():
            for name in layers:
                inputs = [_tensor(x, self._device, like=net) for x in common.layer_inputs(reference, name)]
                arrays[layer_key(name)] = _to_numpy(_flatten(modules[name](*inputs))[0])
        save_arrays(output_path, arrays)
        return {"layers": layers}

    def gradients(self, handle: str, input_path: str, output_path: str, loss: str = "cross_entropy",
                  capture: list | None = None) -> dict:
        """One train-mode forward/backward (dropout off); the model's state is restored after.

        Writes the gradient of every parameter, of the input, and the state after the
        pass: every weight that is not a trained parameter (BN running statistics, frozen
        weights), all keyed by canonical name.
        """
        net = self._models.get(handle)
        modes = {module: module.training for module in net.modules()}
        # what a pass can change, kept to restore (a copy of the whole model took 1 GB on VGG in float64)
        buffers = {name: buffer.detach().clone() for name, buffer in net.named_buffers()}
        try:
            net.train()
            for module in net.modules():
                if isinstance(module, torch.nn.modules.dropout._DropoutNd):
                    module.eval()
            data = load_arrays(input_path)
            inputs = [_tensor(x, self._device, like=net) for x in protocol.model_inputs(data)]
            for x in inputs:
                x.requires_grad_(x.is_floating_point())
            recorder = _Recorder(net, list(capture), with_inputs=True) if capture else None
            try:
                outputs = _flatten(net(*inputs))
            finally:
                if recorder:
                    recorder.close()
            plan = common.loss_plan(loss, data, len(outputs))
            value = sum(_loss(kind, out, _tensor(target, self._device, like=net)) for out, (kind, target) in zip(outputs, plan))
            regulariser = getattr(net, "regularization_loss", None)
            if regulariser is not None:
                value = value + regulariser()
            value.backward()
            arrays = {grad_key(n): _to_numpy(p.grad) for n, p in net.named_parameters() if p.grad is not None}
            trained = {n for n, p in net.named_parameters() if p.requires_grad}  # a pass cannot change them
            arrays.update({state_key(n): v for n, v in canonical_weights(net).items() if n not in trained})
            arrays.update({protocol.input_gradient_key(i): _to_numpy(x.grad) for i, x in enumerate(inputs)
                           if x.grad is not None})
            arrays[protocol.LOSS] = np.asarray(value.item(), dtype=np.float64)
            if recorder:
                arrays.update({k: v for k, v in recorder.arrays.items() if k.startswith(protocol.INPUT + ":")})
            save_arrays(output_path, arrays)
        finally:
            with torch.no_grad():
                for name, buffer in net.named_buffers():
                    buffer.copy_(buffers[name])
            for parameter in net.parameters():
                parameter.grad = None
            for module, training in modes.items():
                module.train(training)
        return {"loss": float(arrays[protocol.LOSS])}

    def export_onnx(self, handle: str, path: str, input_shape: list[int], opset: int = 18, exporter: str = "dynamo",
                    inputs: list[dict] | None = None) -> dict:
        net = self._models.get(handle)
        inputs = inputs or [{"shape": list(input_shape), "dtype": "float32"}]
        examples = tuple(torch.zeros(tuple(spec["shape"]), dtype=getattr(torch, spec.get("dtype", "float32")),
                                     device=self._device) for spec in inputs)
        names = [protocol.onnx_input_name(i, len(inputs)) for i in range(len(inputs))]
        if exporter not in ("dynamo", "legacy"):
            raise ValueError(f"unknown torch ONNX exporter {exporter!r}; use 'dynamo' or 'legacy'")
        # the dynamo exporter writes big models as external data unless told not to
        options = {"external_data": False} if exporter == "dynamo" else {}
        checked = {}

        def write(temporary: str) -> None:  # checked before it is renamed into place
            torch.onnx.export(net, examples, temporary, dynamo=(exporter == "dynamo"), opset_version=opset,
                              input_names=names, **options)
            checked["opset"], checked["onnx"] = common.checked_onnx(temporary)

        atomic_write(path, write)
        opset_used, onnx_version = checked["opset"], checked["onnx"]
        return {
            "exporter": f"torch.onnx ({exporter})",
            "opset": opset_used,
            "versions": {"torch": torch.__version__, "onnx": onnx_version},
            "input_layout": "canonical (channels-first)",
        }
