"""The run record on disk (framework-free parts of repro): claiming, locking, checkpoints
that verify, and what a resume repairs or refuses."""

import json
import multiprocessing
import os
import shutil

import numpy as np
import pytest

from repro.record import RunRecord, sha256_file
from canon.errors import ConfigError
from canon.weights import save_canonical


def manifest(seed: int = 153, framework: str = "torch") -> dict:
    return {"settings": {"framework": framework, "model": "linear", "precision": "float32"},
            "recipe": {"name": "medianet", "seed": seed, "batch_size": 32, "epochs": 3},
            "model_config": {"num_classes": 10}, "dataset": {"fingerprint": "f" * 64}}


def finish_epoch(record: RunRecord, epoch: int, value: float, steps: int = 2) -> None:
    """What repro.loop.train writes for one epoch, with a one-tensor model (each epoch a new best)."""
    for step in range(steps):
        record.log({"kind": "step", "epoch": epoch, "step": epoch * steps + step, "loss": value, "lr": 1e-3})
    weights = record.epoch_weights(epoch)
    save_canonical(weights, {"fc.weight": np.full((2, 3), value, np.float32)}, {"epoch": str(epoch)})
    save_canonical(record.path("best.safetensors"), {"fc.weight": np.full((2, 3), value, np.float32)},
                   {"epoch": str(epoch)})
    record.log({"kind": "epoch", "epoch": epoch, "weights": weights.name, "weights_sha256": sha256_file(weights)})
    loop_state = {"next_epoch": epoch + 1, "metric_lines": record.metric_lines(), "best_epoch": epoch,
                  "best_value": value}
    record.save_checkpoint(epoch, loop_state, {"m.0": np.full(3, value, np.float32), "step_count": np.asarray(epoch)})


def resumable(tmp_path, epochs: int = 2, name: str = "run", **identity) -> RunRecord:
    record = RunRecord.create(tmp_path / name, manifest(**identity))
    for epoch in range(epochs):
        finish_epoch(record, epoch, float(epoch + 1))
    record.release()
    return record


def load(directory):
    """A resume's verification; the lock is given back whatever it finds (one process, many opens)."""
    record = RunRecord.open_for_resume(directory)
    try:
        return record.load_checkpoint()
    finally:
        record.release()


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


def test_a_checkpoint_round_trips_and_names_its_parts(tmp_path):
    record = resumable(tmp_path)
    checkpoint = load(record.dir)
    assert checkpoint.epoch == 1 and checkpoint.loop_state["next_epoch"] == 2 and checkpoint.notes == []
    assert checkpoint.weights == record.epoch_weights(1) and int(checkpoint.optimizer_state["step_count"]) == 1
    np.testing.assert_array_equal(checkpoint.optimizer_state["m.0"], np.full(3, 2.0, np.float32))
    pointer = json.loads(record.path("checkpoint.json").read_text())
    assert set(pointer["files"]) == {"checkpoints/epoch_001.npz", "weights/epoch_001.safetensors", "best.safetensors"}
    assert sorted(p.name for p in (record.dir / "checkpoints").iterdir()) == ["epoch_001.npz"]  # older states go


def test_creating_a_run_where_one_is_refuses_or_replaces_a_stub(tmp_path, capsys):
    stub = RunRecord.create(tmp_path / "stub", manifest())
    stub.log({"kind": "step"})
    stub.release()
    replaced = RunRecord.create(tmp_path / "stub", manifest(seed=7))  # never reached a checkpoint: replaced, said
    assert "replacing the stub" in capsys.readouterr().err and replaced.metrics() == []
    replaced.release()
    interrupted = resumable(tmp_path, name="interrupted")
    with pytest.raises(ConfigError, match="interrupted run with a checkpoint; continue it with .*--resume"):
        RunRecord.claim(interrupted.dir)
    complete = resumable(tmp_path, name="complete")
    complete.complete({})
    with pytest.raises(ConfigError, match="already holds a complete run"):
        RunRecord.claim(complete.dir)
    with pytest.raises(ConfigError, match="already complete"):
        RunRecord.open_for_resume(complete.dir)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="not empty and holds no twinframe run"):
        RunRecord.claim(tmp_path / "other")
    assert (tmp_path / "other" / "notes.txt").read_text() == "mine" and not (tmp_path / "other" / ".lock").exists()


def test_out_that_is_a_file_below_a_file_or_unwritable_is_named(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="--out .*file: .*file is a file, not a folder"):
        RunRecord.claim(tmp_path / "file")
    with pytest.raises(ConfigError, match="below/run: .*file is a file, not a folder"):
        RunRecord.claim(tmp_path / "file" / "below" / "run")
    with pytest.raises(ConfigError, match="cannot write there"):  # root may write anywhere but in /sys
        RunRecord.claim("/sys/twinframe-test-run")


def test_a_claim_given_back_leaves_nothing(tmp_path):
    record = RunRecord.claim(tmp_path / "a" / "b" / "run")
    record.abandon()
    assert not (tmp_path / "a").exists()


def test_one_writer_per_record_and_the_holder_is_named(tmp_path):
    record = resumable(tmp_path)
    holder = RunRecord.open_for_resume(record.dir)
    with pytest.raises(ConfigError, match=f"in use by process {os.getpid()}"):
        RunRecord.open_for_resume(record.dir)
    holder.release()
    RunRecord.open_for_resume(record.dir).release()  # free again once the holder is gone


def _claim_next(runs_dir, barrier, names):
    barrier.wait()
    record = RunRecord.claim_next(runs_dir, "torch-medianet-resnet18-digits-s153")
    names.append(record.dir.name)
    barrier.wait()  # both hold their claims at once


def test_runs_racing_for_the_default_name_get_distinct_names(tmp_path):
    context = multiprocessing.get_context("fork")
    barrier, names = context.Barrier(4), context.Manager().list()
    workers = [context.Process(target=_claim_next, args=(tmp_path, barrier, names)) for _ in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    assert all(worker.exitcode == 0 for worker in workers)
    assert sorted(names) == [f"torch-medianet-resnet18-digits-s153-r{k}" for k in (1, 2, 3, 4)]


def test_a_checkpoint_of_another_run_is_refused_naming_the_mismatch(tmp_path):
    ours, theirs = resumable(tmp_path, name="ours"), resumable(tmp_path, name="theirs", seed=7)
    for name in ("checkpoint.json", "checkpoints", "weights", "best.safetensors", "metrics.jsonl"):
        source, target = theirs.dir / name, ours.dir / name
        shutil.rmtree(target) if target.is_dir() else target.unlink()
        shutil.copytree(source, target) if source.is_dir() else shutil.copy(source, target)
    with pytest.raises(ConfigError, match="belongs to another run .*recipe.seed: 7 in the checkpoint, 153 in this"):
        load(ours.dir)


def test_a_torn_checkpoint_is_refused(tmp_path):
    """The old fault: the weights of one epoch beside the state of another."""
    record = resumable(tmp_path)
    save_canonical(record.epoch_weights(1), {"fc.weight": np.full((2, 3), 9.0, np.float32)}, {"epoch": "1"})
    with pytest.raises(ConfigError, match="weights/epoch_001.safetensors is not the one checkpoint.json names"):
        load(record.dir)


def test_a_state_file_of_another_epoch_or_a_missing_one_is_refused(tmp_path):
    record = resumable(tmp_path)
    state = record.dir / "checkpoints" / "epoch_001.npz"
    state.unlink()
    with pytest.raises(ConfigError, match="checkpoints/epoch_001.npz is missing; the record is damaged"):
        load(record.dir)


def test_metrics_shorter_than_the_checkpoint_counts_are_refused(tmp_path):
    record = resumable(tmp_path)
    lines = record.path("metrics.jsonl").read_text().splitlines()
    record.path("metrics.jsonl").write_text("\n".join(lines[:4]) + "\n")
    with pytest.raises(ConfigError, match="metrics.jsonl holds 4 lines, the checkpoint of epoch 1 counts 6"):
        load(record.dir)
    record.path("metrics.jsonl").write_text("\n".join(lines[:5] + [lines[2]]) + "\n")  # the right count, wrong line
    with pytest.raises(ConfigError, match="line 6 of metrics.jsonl is not the end of epoch 1"):
        load(record.dir)


def test_an_interrupted_epoch_that_replaced_best_is_repaired_from_the_best_epoch(tmp_path):
    record = resumable(tmp_path)
    # epoch 2 wrote a new best and was killed before its checkpoint
    save_canonical(record.path("best.safetensors"), {"fc.weight": np.full((2, 3), 3.0, np.float32)}, {"epoch": "2"})
    save_canonical(record.epoch_weights(2), {"fc.weight": np.full((2, 3), 3.0, np.float32)}, {"epoch": "2"})
    (record.dir / "checkpoints" / "epoch_002.npz").write_bytes(b"half")
    (record.dir / ".tmp-123-0-final.onnx").write_bytes(b"half")
    record.path("final.safetensors").write_bytes(b"from an interrupted finish")
    with open(record.path("metrics.jsonl"), "a") as handle:
        handle.write('{"kind": "step", "epoch": 2, "step": 4, "loss": 3.0, "lr": 0.001}\n{"kind": "st')
    reopened = RunRecord.open_for_resume(record.dir)
    checkpoint = reopened.load_checkpoint()
    assert checkpoint.notes == ["best.safetensors restored from weights/epoch_001.safetensors (the interrupted "
                                "epoch had replaced it)"]
    assert sha256_file(record.path("best.safetensors")) == sha256_file(record.epoch_weights(1))
    removed = reopened.prepare_resume(checkpoint)
    assert set(removed) == {".tmp-123-0-final.onnx", "weights/epoch_002.safetensors", "checkpoints/epoch_002.npz",
                            "final.safetensors"}
    assert reopened.metric_lines() == 6 and reopened.metrics()[-1]["kind"] == "epoch"


def test_complete_records_the_digest_of_every_file(tmp_path):
    record = resumable(tmp_path)
    record.complete({"ok": True})
    files = json.loads(record.path("manifest.json").read_text())["files"]
    assert set(files) == {"metrics.jsonl", "best.safetensors", "checkpoint.json", "checkpoints/epoch_001.npz",
                          "weights/epoch_000.safetensors", "weights/epoch_001.safetensors"}
    assert files["weights/epoch_000.safetensors"] == sha256_file(record.epoch_weights(0))


def test_an_unreadable_state_file_is_named(tmp_path):
    record = resumable(tmp_path)
    state = record.dir / "checkpoints" / "epoch_001.npz"
    state.write_bytes(b"not a zip")
    pointer = json.loads(record.path("checkpoint.json").read_text())
    pointer["files"]["checkpoints/epoch_001.npz"] = sha256_file(state)  # a consistent pointer, a broken file
    record.path("checkpoint.json").write_text(json.dumps(pointer))
    with pytest.raises(ConfigError, match="checkpoint .*epoch_001.npz is unreadable"):
        load(record.dir)


def test_a_run_resumed_after_early_stopping_trains_no_more_epochs():
    """Its finish was interrupted: the resume goes straight to the finish (nothing else is touched)."""
    from repro.loop import LoopState, Progress, train
    from repro.recipes import get_recipe

    state = LoopState(next_epoch=3, stopped_early=True)
    assert train(None, None, None, get_recipe("chest_multilabel"), None, state, Progress(False)) is state
