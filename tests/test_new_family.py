"""docs/architecture.md's promise, kept: a new model family is three new files and one case row.

A copy of the packages gets exactly what the doc says to write (the canon config, the two twins,
one ParityCase row) and nothing else; then ``python -m parity check`` runs every check on it."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

CONFIG = '''
from dataclasses import dataclass

from canon.errors import ConfigError
from canon.models._registry import register_models


@register_models({"tiny_s": {"width": 6}, "tiny_l": {"width": 12}})
@dataclass(frozen=True)
class TinyConfig:
    width: int = 8
    num_classes: int = 5
    family: str = "tiny"

    def validate(self) -> None:
        if self.width < 1 or self.num_classes < 1:
            raise ConfigError(f"tiny width and num_classes must be >= 1, got {self.width}, {self.num_classes}")
'''
TORCH_TWIN = '''
from torch import nn

from impl_torch.registry import register_family


@register_family("tiny")
class Tiny(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.conv = nn.Conv2d(3, config.width, 3, padding=1)
        self.relu = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(config.width, config.num_classes)

    def forward(self, x):
        return self.fc(self.flatten(self.pool(self.relu(self.conv(x)))))
'''
TF_TWIN = '''
import keras

from impl_tf.registry import register_family


@register_family("tiny")
def Tiny(config):
    x = inputs = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(config.width, 3, padding="same", name="conv")(x)
    x = keras.layers.ReLU(name="relu")(x)
    x = keras.layers.GlobalAveragePooling2D(keepdims=True, name="pool")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    return keras.Model(inputs, keras.layers.Dense(config.num_classes, name="fc")(x))
'''
ROW = '        ParityCase("tiny_s", "tiny_s", ZOO_FACTORIES, config={"num_classes": 7}, input_shape=(2, 3, 16, 24)),\n'


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("project")
    for package in ("canon", "impl_torch", "impl_tf", "parity"):
        shutil.copytree(ROOT / package, root / package, ignore=shutil.ignore_patterns("__pycache__", "tests"))
    (root / "canon/models/tiny.py").write_text(textwrap.dedent(CONFIG))
    (root / "impl_torch/models/tiny.py").write_text(textwrap.dedent(TORCH_TWIN))
    (root / "impl_tf/models/tiny.py").write_text(textwrap.dedent(TF_TWIN))
    zoo = (root / "parity/zoo.py").read_text()
    end = zoo.index("\n    )\n}\n", zoo.index("CASES: dict"))
    (root / "parity/zoo.py").write_text(zoo[:end + 1] + ROW + zoo[end + 1:])
    return root


def _run(project: Path, code: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], cwd=project, capture_output=True, text=True, timeout=600,
                          env={"PYTHONPATH": str(project), "PATH": "/usr/bin:/bin", "HOME": str(project)})
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.strip().splitlines()[-1]


@pytest.mark.torch
@pytest.mark.tf
def test_the_new_files_register_themselves_in_canon_both_twins_and_the_zoo(project):
    found = {"canon": _run(project, "import canon.models as m; print(m.resolve('tiny_l').width)"),
             "zoo": _run(project, "from parity import zoo; print(zoo.get_case('tiny_s').model)")}
    for package in ("impl_torch", "impl_tf"):
        found[package] = _run(project, f"import {package}; print(sorted({package}.registry.families()))")
    assert found["canon"] == "12" and found["zoo"] == "tiny_s"
    assert all("'tiny'" in found[package] for package in ("impl_torch", "impl_tf")), found


@pytest.mark.torch
@pytest.mark.tf
def test_every_parity_check_runs_and_passes_on_the_new_family(project):
    report = project / "parity.json"
    done = subprocess.run([sys.executable, "-m", "parity", "check", "tiny_s", "--report", str(report)], cwd=project,
                          capture_output=True, text=True, timeout=900, env={"PYTHONPATH": str(project),
                                                                           "PATH": "/usr/bin:/bin",
                                                                           "HOME": str(project)})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    entry = json.loads(report.read_text())["models"]["tiny_s"]
    checks = ("contract", "transfer", "layerwise_propagated", "layerwise_isolated", "layerwise_float64",
              "gradients_float64", "gradients", "onnx", "determinism")
    assert all(entry[check]["passed"] for check in checks), {check: entry[check]["passed"] for check in checks}
    assert "verdict: PASS" in done.stdout
