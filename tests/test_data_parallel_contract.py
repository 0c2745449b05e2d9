"""The framework-free parts of data parallelism: the shard rule, the TF_CONFIG launcher's
supervision of its ranks, the world a launcher's environment describes, and the options checked
before any process starts."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import numpy as np
import pytest

from canon.training import MIN_SHARD, shard_loss_weight, shard_rows
from repro import launch
from repro.launch import EXIT_RANK_FAILED, RankFailure, World, supervise, tf_config, world_from_environment


@pytest.mark.parametrize("batch, replicas", [(8, 2), (7, 2), (64, 3), (5, 5), (193, 4)])
def test_shards_are_numpy_array_split_in_order_and_cover_the_batch(batch, replicas):
    rows = np.arange(batch)
    shards = [rows[shard_rows(batch, replicas, r)] for r in range(replicas)]
    assert [list(s) for s in shards] == [list(s) for s in np.array_split(rows, replicas)]
    assert np.array_equal(np.concatenate(shards), rows)


@pytest.mark.parametrize("batch, replicas", [(8, 2), (7, 2), (64, 3), (193, 4)])
def test_shard_weights_make_the_average_of_shard_means_the_batch_mean(batch, replicas):
    losses = np.random.default_rng(batch).normal(size=batch)
    weighted = [losses[shard_rows(batch, replicas, r)].mean() * shard_loss_weight(batch, replicas, r)
                for r in range(replicas)]
    assert np.mean(weighted) == pytest.approx(losses.mean(), rel=1e-14)
    assert shard_loss_weight(batch, 1, 0) == 1.0


def test_a_replica_outside_the_world_is_refused():
    with pytest.raises(ValueError, match="replica 2 is not one of 0..1"):
        shard_rows(8, 2, 2)


def test_the_world_comes_from_torchrun_or_tf_config(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "4")
    assert world_from_environment("torch") == World(1, 4)
    assert world_from_environment("tf") == World(0, 1)  # TF reads TF_CONFIG only
    monkeypatch.setenv("TF_CONFIG", tf_config([1001, 1002, 1003], 2))
    assert world_from_environment("tf") == World(2, 3) and not World(2, 3).writes
    assert json.loads(tf_config([1001], 0))["cluster"]["worker"] == ["127.0.0.1:1001"]


def _ranks(*programs: str) -> list[subprocess.Popen]:
    return [subprocess.Popen([sys.executable, "-c", program]) for program in programs]


def test_ranks_that_end_alike_give_their_status():
    assert supervise(_ranks("pass", "pass"), 0.05, 5.0) == 0
    assert supervise(_ranks("raise SystemExit(3)", "import time; time.sleep(0.5); raise SystemExit(3)"), 0.05, 5.0) == 3


def test_a_killed_rank_stops_the_others_and_is_named():
    started = time.monotonic()
    outcome = supervise(_ranks("import time; time.sleep(60)", "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"),
                        0.05, 1.0)
    assert outcome == (1, -9)
    assert time.monotonic() - started < 10  # one grace period, then SIGTERM: not the sleeping rank's 60 s
    assert RankFailure("tf", *outcome).describe() == "TensorFlow/Keras rank 1 was killed by SIGKILL"
    assert RankFailure("torch", 0, 1).describe() == "PyTorch rank 0 exited with status 1"


def test_a_rank_that_ignores_sigterm_is_killed():
    ignores = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"
    started = time.monotonic()
    assert supervise(_ranks(ignores, "raise SystemExit(1)"), 0.05, 0.5) == (1, 1)
    assert time.monotonic() - started < 10


def _run_py(*args: str) -> subprocess.CompletedProcess:
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    return subprocess.run([sys.executable, str(root / "repro" / "run.py"), *args], cwd=root, capture_output=True,
                          text=True, timeout=120)


def test_too_small_a_batch_for_the_replicas_is_refused_before_anything_starts(tmp_path):
    result = _run_py("--framework", "torch", "--nproc", "2", "--limit", "16", "--batch-size", "3",
                     "--out", str(tmp_path / "run"))
    assert result.returncode == 2
    assert f"leaves some of 2 replicas fewer than {MIN_SHARD}" in result.stderr
    assert not (tmp_path / "run").exists() or not any((tmp_path / "run").iterdir())


def test_replicas_in_one_process_are_refused_where_the_engine_has_none(tmp_path):
    result = _run_py("--framework", "torch", "--replicas", "2", "--out", str(tmp_path / "run"))
    assert result.returncode == 2 and "runs one replica per process; use --nproc" in result.stderr


def test_synchronized_batchnorm_on_cpu_is_refused_where_the_engine_has_none(tmp_path):
    result = _run_py("--framework", "torch", "--nproc", "2", "--sync-batchnorm", "--out", str(tmp_path / "run"))
    assert result.returncode == 2 and "synchronized BatchNorm runs on GPUs only; use --device cuda" in result.stderr


def test_exit_status_of_a_failed_rank_is_documented():
    epilog = "".join(_run_py("--help").stdout.split())  # argparse wraps it, at hyphens too
    assert f"{EXIT_RANK_FAILED}arankofadata-parallelrunfailed" in epilog
    assert launch.STOP_GRACE_S > 0 and launch.COLLECTIVE_TIMEOUT_S > launch.STOP_GRACE_S
