"""The torch twins of the MedMNIST+ architectures are timm's networks: the same state_dict names
and shapes (reduced and full size), the same outputs (against frozen timm references), and
``python -m parity port`` carries a timm ``.safetensors`` checkpoint to the Keras twin."""

from __future__ import annotations

import json

import numpy as np
import pytest

from parity import zoo
from parity.__main__ import main as parity_cli
from canon.weights import save_canonical
from tests.timm_reference import FULL_SIZE, REDUCED, load_layout, load_reduced, synthetic_weights

TORCH = zoo.ZOO_FACTORIES["torch"]
pytestmark = pytest.mark.torch


@pytest.mark.parametrize("model", sorted(REDUCED))
def test_torch_twin_has_timms_names_and_outputs(torch_runner, workdir, model):
    shapes, reference = load_reduced(model)
    twin = torch_runner.build(TORCH, model, REDUCED[model].config)
    try:
        assert list(twin.weights) == list(shapes)  # timm's order too: a strict load needs only the names
        assert {k: list(v) for k, v in twin.weights.items()} == shapes
        path = str(workdir / f"timm-synthetic-{model}.safetensors")
        save_canonical(path, synthetic_weights(shapes))
        torch_runner.load_weights(twin, path)
        out = torch_runner.forward(twin, reference["x"])[0]["output:0"]
    finally:
        torch_runner.free(twin)
    expected = reference["y"]
    assert np.abs(expected).max() > 1e-2  # a real signal, not a vanished one
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())


@pytest.mark.parametrize("model", sorted(FULL_SIZE))
def test_full_size_torch_twin_takes_a_timm_checkpoint_strictly(torch_runner, model):
    twin = torch_runner.build(TORCH, model, FULL_SIZE[model])
    try:
        assert {k: list(v) for k, v in twin.weights.items()} == load_layout(model)
    finally:
        torch_runner.free(twin)


@pytest.mark.tf
def test_port_carries_a_timm_safetensors_checkpoint_to_keras(tmp_path, capsys):
    model = "efficientnet_b0"
    shapes, _ = load_reduced(model)
    checkpoint = tmp_path / "model.safetensors"  # timm's file: a flat state dict, timm's names
    save_canonical(str(checkpoint), synthetic_weights(shapes))
    out = tmp_path / "ported"
    config = json.dumps(REDUCED[model].config)
    assert parity_cli(["port", model, "--checkpoint", str(checkpoint), "--config", config, "--out", str(out)]) == 0
    assert "verdict: PASS" in capsys.readouterr().out
    report = json.loads((out / "port.json").read_text())
    assert report["passed"] and report["beyond_tolerance"] == [] and report["loaded"]["tensors"] == len(shapes)
