"""make demo's live progress: read from the records the two runs are writing (framework-free)."""

import json

from repro.demo import ProgressBoard, run_progress


def record(directory, steps: int, torn_line: bool = False):
    directory.mkdir()
    manifest = {"recipe": {"epochs": 3, "batch_size": 32}, "dataset": {"sizes": {"train": 100}}}
    (directory / "manifest.json").write_text(json.dumps(manifest))
    lines = [json.dumps({"kind": "step", "epoch": i // 3, "step": i, "loss": 2.0 - i / 10}) for i in range(steps)]
    (directory / "metrics.jsonl").write_text("\n".join(lines) + ("\n" + '{"kind": "st' if torn_line else ""))
    return directory


def test_progress_is_counted_from_the_step_lines(tmp_path):
    # 100 samples at batch 32: 32, 32, 32, 4 -> 4 steps per epoch, 12 in all
    assert run_progress(record(tmp_path / "a", 5, torn_line=True)) == {
        "epoch": 1, "epochs": 3, "done": 5, "total": 12, "loss": 1.6, "complete": False}
    assert run_progress(tmp_path / "missing") is None


def test_a_log_gets_whole_lines_without_terminal_codes(tmp_path, capsys):
    board = ProgressBoard({"torch": record(tmp_path / "t", 6), "tf": tmp_path / "not-yet"}, started=0.0)
    board.tty = False
    board.show(final=True)
    out = capsys.readouterr().out
    assert "\x1b" not in out
    torch_line, tf_line = out.splitlines()
    assert torch_line.startswith("torch  epoch 2/3  step    6/12  loss 1.5000") and "left" in torch_line
    assert tf_line.startswith("tf     starting")


def test_a_run_past_its_last_step_is_finishing_then_done(tmp_path):
    run = record(tmp_path / "r", 12)
    assert "12/12 steps, finishing (final weights" in ProgressBoard.line("tf", run, 60.0)
    manifest = json.loads((run / "manifest.json").read_text())
    (run / "manifest.json").write_text(json.dumps({**manifest, "status": "complete"}))
    assert ProgressBoard.line("tf", run, 61.0).startswith("tf     12/12 steps, done")
