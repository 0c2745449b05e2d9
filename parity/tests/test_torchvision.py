"""The torch twins are torchvision's networks: the same state_dict names and shapes, the same
outputs (against frozen torchvision references), and ``python -m parity port`` carries such a
checkpoint to the Keras twin, checked layer by layer."""

from __future__ import annotations

import json

import numpy as np
import pytest

from parity import zoo
from parity.__main__ import main as parity_cli
from parity.worker import WorkerError
from canon.weights import save_canonical
from tests.torchvision_reference import MODELS, load_reference, synthetic_weights

TORCH = zoo.ZOO_FACTORIES["torch"]


def _checkpoint(torch_runner, name: str, path: str, **config) -> str:
    """A state_dict file as torch.save writes it (num_batches_tracked included)."""
    model = torch_runner.build(TORCH, name, config)
    try:
        return torch_runner.save_native(model, path)
    finally:
        torch_runner.free(model)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_torch_twin_has_torchvisions_names_and_outputs(torch_runner, workdir, name):
    shapes, reference = load_reference(name)
    options, input_shape = MODELS[name]
    config = {**options, **({"input_size": input_shape[2:]} if name == "alexnet" else {})}
    twin = torch_runner.build(TORCH, name, config)
    try:
        assert {k: list(v) for k, v in twin.weights.items()} == shapes
        path = str(workdir / f"torchvision-synthetic-{name}.safetensors")
        save_canonical(path, synthetic_weights(shapes))
        torch_runner.load_weights(twin, path)
        out = torch_runner.forward(twin, reference["x"])[0]["output:0"]
    finally:
        torch_runner.free(twin)
    expected = reference["y"]
    assert np.abs(expected).max() > 1e-3  # a real signal, not a vanished one
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())


def _trained_looking_checkpoint(torch_runner, path: str) -> str:
    """ResNet-18 with BatchNorm statistics as training leaves them (running variances 0.05-0.5):
    its activations reach tens, where a fixed absolute tolerance fails correct ports."""
    model = torch_runner.build(TORCH, "resnet18", {})
    try:
        weights = synthetic_weights({name: list(shape) for name, shape in model.weights.items()})
        for name in weights:
            if name.endswith("running_var"):
                weights[name] = np.random.default_rng(len(name)).uniform(0.05, 0.5, weights[name].shape).astype(np.float32)
        save_canonical(f"{path}.safetensors", weights)
        torch_runner.load_weights(model, f"{path}.safetensors")
        return torch_runner.save_native(model, path)
    finally:
        torch_runner.free(model)


def test_port_command_carries_a_checkpoint_to_keras(torch_runner, tmp_path, capsys):
    checkpoint = _trained_looking_checkpoint(torch_runner, str(tmp_path / "resnet18.pth"))
    out = tmp_path / "ported"
    assert parity_cli(["port", "resnet18", "--checkpoint", checkpoint, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "verdict: PASS" in printed and "beyond the max-mode tolerance: none" in printed
    report = json.loads((out / "port.json").read_text())
    assert report["passed"] and report["target"] == "tf" and report["layerwise"]["passed"]
    assert report["beyond_tolerance"] == [] and report["tolerances"]["default"]["mode"] == "max"
    assert max(row["max_abs"] for row in report["layerwise"]["layers"]) > 1e-5  # the old fixed bound would fail
    # 11,689,512 trainable + 9,600 BatchNorm running statistics, every one carried
    assert report["audit"]["parameters"] == report["audit"]["source_parameters"] == 11_699_112
    assert sorted(p.name for p in out.iterdir()) == ["port.json", "resnet18.safetensors", "resnet18.weights.h5"]
    with pytest.raises(SystemExit):  # never overwrites what is there
        parity_cli(["port", "resnet18", "--checkpoint", checkpoint, "--out", str(out)])
    assert "refusing to overwrite" in capsys.readouterr().err


def test_checkpoint_errors_name_the_file_and_the_keys(torch_runner, tmp_path):
    twin = torch_runner.build(TORCH, "resnet18", {"num_classes": 10})
    try:
        corrupt = tmp_path / "corrupt.pth"
        corrupt.write_bytes(b"not a checkpoint")
        with pytest.raises(WorkerError, match="corrupt.pth: not a readable torch checkpoint"):
            torch_runner.load_native(twin, str(corrupt))
        other = _checkpoint(torch_runner, "resnet34", str(tmp_path / "resnet34.pth"), num_classes=10)
        with pytest.raises(WorkerError, match=r"from .*resnet34.pth\): not used by the target: \['layer1.2.bn1.bias'"):
            torch_runner.load_native(twin, other)
    finally:
        torch_runner.free(twin)
