"""The run record on disk (framework-free parts of repro)."""

import json

import numpy as np
import pytest

from repro.record import RunRecord
from spec.errors import ConfigError


def test_metrics_lines_are_counted_and_truncated_for_resume(tmp_path):
    record = RunRecord.create(tmp_path / "run", {"seed": 1})
    for i in range(5):
        record.log({"step": i})
    assert record.metric_lines() == 5
    reopened = RunRecord(tmp_path / "run")
    assert reopened.metric_lines() == 5
    reopened.log({"step": 5})
    reopened.truncate_metrics(3)
    assert reopened.metric_lines() == 3 and [m["step"] for m in reopened.metrics()] == [0, 1, 2]


def test_create_refuses_an_existing_run_and_resume_checks_its_state(tmp_path):
    record = RunRecord.create(tmp_path / "run", {"seed": 1})
    assert json.loads((tmp_path / "run" / "manifest.json").read_text())["status"] == "running"
    with pytest.raises(ConfigError, match="already exists and is not empty"):
        RunRecord.create(tmp_path / "run", {"seed": 2})
    with pytest.raises(ConfigError, match="no checkpoint yet"):
        RunRecord.open_for_resume(tmp_path / "run")
    record.save_checkpoint({"next_epoch": 1}, {"m.0": np.ones(3, np.float32), "step_count": np.asarray(7)})
    loop, optimizer = RunRecord.open_for_resume(tmp_path / "run").load_checkpoint()
    assert loop == {"next_epoch": 1} and int(optimizer["step_count"]) == 7
    np.testing.assert_array_equal(optimizer["m.0"], np.ones(3, np.float32))
    record.complete({"ok": True})
    with pytest.raises(ConfigError, match="already complete"):
        RunRecord.open_for_resume(tmp_path / "run")


def test_a_corrupt_checkpoint_is_named(tmp_path):
    record = RunRecord.create(tmp_path / "run", {})
    (tmp_path / "run" / "checkpoint.npz").write_bytes(b"not a zip")
    with pytest.raises(ConfigError, match="checkpoint .*checkpoint.npz is unreadable"):
        record.load_checkpoint()
