"""repro/run.py refuses what it cannot do with exit status 2, naming the option, before any
framework is imported and before anything is written.  Run in this process: it must still
hold no framework afterwards (the proof that the refusal came first)."""

from __future__ import annotations

import json
import os
import sys

import pytest

from repro import run as run_py
from repro.record import RunRecord
from repro.data.datasets import write_synthetic_medmnist
from repro.recipes import recipe_of_run

QUICK = ["--model", "resnet18", "--limit", "16", "--epochs", "2", "--batch-size", "8", "--no-progress"]


def refused(argv: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as stop:
        run_py.main(argv)
    assert stop.value.code == 2
    assert not {"torch", "tensorflow", "keras"} & set(sys.modules)
    return capsys.readouterr().err


@pytest.mark.parametrize("args, message", [
    (["--seed", "-1"], "--seed must be in 0..4294967295, got -1"),
    (["--seed", str(2**32)], "--seed must be in 0..4294967295, got 4294967296"),
    (["--threads", "0"], "--threads must be >= 1, got 0"),
    (["--device", "tpu"], "--device 'tpu' is unknown; use cpu, cuda (or gpu), or cuda:N"),
    (["--device", "cpu:1"], "--device 'cpu:1' is unknown"),
    (["--device", "cuda:99"], "--device cuda:99: this machine has no such GPU (no /dev/nvidia99)"),
    (["--input-size", "0"], "--input-size must be >= 1, got 0"),
    (["--input-size", "-8"], "--input-size must be >= 1, got -8"),
    (["--batch-size", "0"], "--batch-size must be >= 1, got 0"),
    (["--epochs", "0"], "--epochs must be >= 1, got 0"),
    (["--limit", "1"], "the training split of 'digits' holds one sample; training needs at least one batch of two"),
    (["--recipe", "nope"], "unknown recipe 'nope'"),
    (["--model", "resnet19"], "unknown model 'resnet19'"),
    (["--dataset", "medmnist", "--data-dir", "/nonexistent", "--flag", "pathmnist"], "/nonexistent"),
    (["--dataset", "medmnist", "--data-dir", "/tmp"], "needs --flag"),
    (["--model-config", "{bad"], "--model-config is not JSON"),
    (["--init-weights", "/nonexistent.safetensors"], "no such file"),
    (["--precision", "float16"], "invalid choice: 'float16'"),
    (["--fram", "torch"], "unrecognized arguments: --fram"),  # no abbreviations: --resume checks options by name
])
def test_a_bad_option_is_named_before_anything_happens(tmp_path, capsys, args, message):
    out = tmp_path / "run"
    assert message in refused(["--framework", "torch", *args, "--out", str(out)], capsys)
    assert not out.exists()


def test_framework_is_required_without_resume(tmp_path, capsys):
    assert "--framework is required" in refused(["--out", str(tmp_path / "run")], capsys)


def test_an_out_that_cannot_hold_a_run_is_named(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    for out, message in ((tmp_path / "file", "is a file, not a folder"),
                         (tmp_path / "file" / "run", f"{tmp_path / 'file'} is a file, not a folder"),
                         ("/sys/twinframe-run", "--out /sys/twinframe-run: cannot write there")):
        assert message in refused(["--framework", "torch", *QUICK, "--out", str(out)], capsys)
    assert (tmp_path / "file").read_text() == "x"


def test_data_that_loads_but_cannot_train_is_refused(tmp_path, capsys):
    write_synthetic_medmnist(tmp_path / "data", "pathmnist", 28, counts=(16, 8, 0), seed=1)
    err = refused(["--framework", "torch", *QUICK, "--dataset", "medmnist", "--flag", "pathmnist", "--data-dir",
                   str(tmp_path / "data"), "--out", str(tmp_path / "run")], capsys)
    assert "the test split of 'pathmnist' is empty" in err and not (tmp_path / "run").exists()


def interrupted_record(tmp_path) -> RunRecord:
    """A record as run.py starts it (settings resolved from QUICK), whose checkpoint is garbage:
    a resume that gets past the option checks stops at the checkpoint."""
    args = run_py.build_parser().parse_args(["--framework", "torch", *QUICK])
    settings = run_py.resolve_settings(args)
    recipe = recipe_of_run(settings)
    record = RunRecord.create(tmp_path / "run", {"settings": settings, "recipe": recipe.to_dict(), "model_config": {},
                                                 "dataset": {"fingerprint": "f" * 64}})
    record.path("checkpoint.json").write_text("{not json")
    record.release()
    return record


@pytest.mark.parametrize("args, message", [
    (["--epochs", "5"], "--epochs 5 differs from the record (recipe epochs 2): a resumed run keeps the settings"),
    (["--framework", "tf"], "--framework tf differs from the record (framework 'torch')"),
    (["--seed", "7"], "--seed 7 differs from the record (recipe seed 153)"),
    (["--model-config", '{"blocks": [1, 1, 1, 1]}'], "--model-config {\"blocks\": [1, 1, 1, 1]} differs from the record "
                                                     "(model_config {})"),
    (["--no-onnx"], "--no-onnx differs from the record (onnx True)"),
    (["--threads", "2"], "--threads 2 differs from the record (threads 1)"),
    (["--out", "elsewhere"], "--out cannot be given with --resume: a resumed run stays in its directory"),
])
def test_options_beside_resume_must_say_what_the_record_says(tmp_path, capsys, args, message):
    record = interrupted_record(tmp_path)
    before = record.path("manifest.json").read_bytes()
    assert message in refused(["--resume", str(record.dir), *args], capsys)
    assert record.path("manifest.json").read_bytes() == before


def test_options_equal_to_the_record_pass_and_a_damaged_checkpoint_is_refused(tmp_path, capsys):
    record = interrupted_record(tmp_path)
    err = refused(["--resume", str(record.dir), "--framework", "torch", "--epochs", "2", "--seed", "153",
                   "--model", "resnet18", "--no-progress"], capsys)
    assert "checkpoint.json is unreadable" in err and "the record is damaged and cannot be resumed" in err


def test_a_second_writer_is_refused_naming_the_first(tmp_path, capsys):
    record = interrupted_record(tmp_path)
    holder = RunRecord.open_for_resume(record.dir)
    try:
        err = refused(["--resume", str(record.dir)], capsys)
    finally:
        holder.release()
    assert f"is in use by process {os.getpid()}, which is writing it" in err


def test_resume_of_nothing_is_named(tmp_path, capsys):
    assert "no such run directory" in refused(["--resume", str(tmp_path / "none")], capsys)
    (tmp_path / "empty").mkdir()
    assert "no manifest.json there" in refused(["--resume", str(tmp_path / "empty")], capsys)
    complete = interrupted_record(tmp_path)
    complete.complete({})
    complete.release()
    assert "the run is already complete" in refused(["--resume", str(complete.dir)], capsys)
    assert json.loads(complete.path("manifest.json").read_text())["status"] == "complete"
