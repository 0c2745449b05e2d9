"""repro/medmnist_plus.py: one command runs a row of the benchmark's table with the paper's seeds."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from repro import medmnist_plus

ROOT = Path(__file__).resolve().parents[1]


def test_the_table_has_a_row_for_every_dataset_size_procedure_and_architecture(capsys):
    assert medmnist_plus.main(["--list"]) == 0
    rows = capsys.readouterr().out.split()
    assert len(rows) == len(set(rows)) == 12 * 4 * 3 * 10
    assert "pathmnist-28-end_to_end-vit_base_patch16_224.dino" in rows and "organsmnist-224-knn-samvit_base_patch16" in rows


@pytest.mark.slow  # three training runs (29 s); the rows' names and commands are checked above
@pytest.mark.torch
def test_a_row_runs_the_papers_three_seeds_and_reports_their_mean(tmp_path):
    from repro.data.datasets import write_synthetic_medmnist

    write_synthetic_medmnist(tmp_path / "data", "pneumoniamnist", 28, counts=(40, 16, 16), seed=2)
    command = [sys.executable, "repro/medmnist_plus.py", "--flag", "pneumoniamnist", "--size", "28", "--procedure", "knn",
               "--model", "resnet18", "--framework", "torch", "--data-dir", str(tmp_path / "data"),
               "--out", str(tmp_path / "rows"), "--", "--input-size", "32", "--no-progress", "--no-onnx"]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    row = json.loads((tmp_path / "rows" / "pneumoniamnist-28-knn-resnet18" / "row.json").read_text())
    assert [s["seed"] for s in row["seeds"]] == [9930641, 115149041, 252139603]
    for seed in row["seeds"]:
        manifest = json.loads((Path(seed["run"]) / "manifest.json").read_text())
        assert manifest["seed"] == seed["seed"] and manifest["summary"]["knn"]["test_acc"] == seed["acc"]
    accs = [s["acc"] for s in row["seeds"]]
    assert row["acc"]["mean"] == pytest.approx(sum(accs) / 3) and row["acc"]["n"] == 3
    assert len({s["auc"] for s in row["seeds"]}) > 1  # three seeds, three initialisations
    assert "mean" in result.stdout and "pneumoniamnist-28-knn-resnet18" in result.stdout


def test_a_row_without_its_coordinates_is_refused(capsys):
    with pytest.raises(SystemExit) as exit_info:
        medmnist_plus.main(["--flag", "pathmnist", "--size", "28"])
    assert exit_info.value.code == 2 and "--procedure, --model, --framework, --data-dir" in capsys.readouterr().err
