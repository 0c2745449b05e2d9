"""repro/compare.py on hand-made run records: no framework is loaded, the verdicts are known.

A record here is what run.py writes, reduced to what compare.py reads: the manifest, the
metrics lines, an epoch's and the final canonical weights, the test predictions and, for the
ONNX question, a one-layer ONNX model of the digits (a linear map from 64 pixels to 10 logits);
the manifest's summary, epoch line and file list give each file's sha256, as the real record does.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from repro import compare
from repro.record import sha256_file
from canon.weights import save_canonical

SETTINGS = {"recipe": "medianet", "recipe_overrides": {"epochs": 1, "batch_size": 32, "seed": 153},
            "model": "linear", "model_config": {}, "dataset": "digits", "flag": None, "size": 28, "data_dir": None,
            "limit": 64, "threads": 1, "device": "cpu", "deterministic": True, "precision": "float32",
            "parity": True, "onnx": True, "init_from": []}
WEIGHT = np.random.default_rng(0).standard_normal((64, 10)).astype(np.float32)


def digits_inputs() -> np.ndarray:
    from repro.loop import make_batch
    from repro.data.datasets import load_digits, subset
    from repro.recipes import get_recipe

    dataset = subset(load_digits(seed=0), {"train": 64, "val": 64, "test": 64})
    split = dataset.splits["test"]
    return make_batch(split, np.arange(len(split.labels)), get_recipe("medianet", epochs=1), dataset.task)[0]


def linear_onnx(path, weight: np.ndarray) -> None:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [helper.make_node("Flatten", ["x"], ["flat"], axis=1), helper.make_node("MatMul", ["flat", "w"], ["logits"])],
        "linear", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 1, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["n", 10])], [numpy_helper.from_array(weight, "w")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=9), str(path))


def make_run(root, name, framework, losses, weight=WEIGHT, init="init-digest", status="complete", onnx=False,
             files=True, **settings):
    """A record as run.py leaves it; ``files=False`` is an older record, without the file list."""
    directory = root / name
    epoch_weights = directory / "weights" / "epoch_000.safetensors"
    epoch_weights.parent.mkdir(parents=True)
    save_canonical(epoch_weights, {"fc.weight": weight.T.copy()})
    save_canonical(directory / "final.safetensors", {"fc.weight": weight.T.copy()})
    logits = digits_inputs().reshape(64, -1) @ weight
    np.save(directory / "final_test_logits.npy", logits)
    if onnx:
        linear_onnx(directory / "final.onnx", weight)
    steps = [{"kind": "step", "epoch": 0, "step": i, "loss": loss, "lr": 1e-3 * (1 - i / 10)}
             for i, loss in enumerate(losses)]
    epoch = {"kind": "epoch", "epoch": 0, "val_loss": float(losses[-1]), "val_acc": 0.5, "wall_s": 1.0,
             "weights": epoch_weights.name, "weights_sha256": sha256_file(epoch_weights)}
    (directory / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in (*steps, epoch)))
    manifest = {"status": status, "seed": 153, "settings": {**SETTINGS, **settings, "framework": framework},
                "init": {"digest": init}}
    (directory / "manifest.json").write_text(json.dumps(manifest))
    return seal(directory, files) if status == "complete" else directory


def seal(directory, files=True):
    """What a completing run writes last: the summary's digests and every file's sha256.  Called
    again after a test changes a file, it models a run that wrote that file: no damage."""
    manifest = json.loads((directory / "manifest.json").read_text())
    summary = manifest.setdefault("summary", {})
    summary["final_sha256"] = sha256_file(directory / "final.safetensors")
    if (directory / "final.onnx").is_file():
        summary["onnx_sha256"] = sha256_file(directory / "final.onnx")
    if files:
        every = sorted(path for path in directory.rglob("*") if path.is_file() and path.name != "manifest.json")
        manifest["files"] = {path.relative_to(directory).as_posix(): sha256_file(path) for path in every}
    (directory / "manifest.json").write_text(json.dumps(manifest))
    return directory


LOSSES = [2.3, 2.1, 1.9, 1.7]


def verdicts(tmp_path, *dirs, extra=()):
    code = compare.main([*map(str, dirs), "--reports", str(tmp_path / "reports"), *extra])
    return code, json.loads((tmp_path / "reports" / "compare.json").read_text())


def flip(path, count=4000):
    """Invert up to ``count`` bytes after the safetensors header: the file still loads, and its
    record still says what it said; only its sha256 tells."""
    data = bytearray(path.read_bytes())
    start = max(8 + int.from_bytes(data[:8], "little"), len(data) - count)
    data[start:] = bytes(b ^ 0xFF for b in data[start:])
    path.write_bytes(bytes(data))
    return len(data) - start


def problems(result, run) -> list[tuple[str, str]]:
    entry = next(e for e in result["integrity"] if e["run"] == str(run))
    return [(p["file"], p["problem"]) for p in entry["problems"]]


def test_identical_reruns_are_bitwise_and_equal_twins_pass_parity(tmp_path):
    runs = [make_run(tmp_path, f"{fw}-{k}", fw, LOSSES) for fw in ("torch", "tf") for k in (1, 2)]
    code, result = verdicts(tmp_path, *runs, extra=["--no-onnx"])
    assert code == 0
    assert result["verdicts"] == {"determinism": "pass", "parity": "pass", "onnx": "not checked",
                                  "parity_loss_max_rel": 0.0, "integrity": "pass"}
    assert [e["problems"] for e in result["integrity"]] == [[]] * 4 and result["not_compared"] == []
    assert {d["framework"] for d in result["determinism"]} == {"torch", "tf"}
    badge = json.loads((tmp_path / "reports" / "badges" / "reproducible.json").read_text())
    assert badge == {"schemaVersion": 1, "label": "reproducible", "message": "bitwise", "color": "brightgreen"}
    assert (tmp_path / "reports" / "badges" / "parity.svg").read_text().startswith("<svg")
    assert (tmp_path / "reports" / "loss_curves.png").stat().st_size > 1000


def test_a_rerun_that_differs_is_caught_at_its_first_differing_line(tmp_path):
    a = make_run(tmp_path, "a", "torch", LOSSES)
    b = make_run(tmp_path, "b", "torch", [2.3, 2.1, 1.9000001, 1.7])
    code, result = verdicts(tmp_path, a, b, extra=["--no-onnx"])
    assert code == 1 and result["verdicts"]["determinism"] == "fail"
    first = result["determinism"][0]["first_difference"]
    assert first["line"] == 2 and first["keys"] == ["loss"]


def test_parity_reports_the_first_step_beyond_tolerance_and_by_how_much(tmp_path):
    torch_run = make_run(tmp_path, "torch", "torch", LOSSES)
    tf_run = make_run(tmp_path, "tf", "tf", [2.3, 2.1 * (1 + 3e-6), 1.9 * (1 + 2e-4), 1.7])
    code, result = verdicts(tmp_path, torch_run, tf_run, extra=["--no-onnx"])
    steps = result["parity"][0]["steps"]
    assert code == 1 and result["verdicts"]["parity"] == "fail"
    assert steps["first_divergent_step"] == 2 and steps["first_divergent_rel"] == pytest.approx(2e-4, rel=1e-6)
    assert steps["lr_max_rel"] == 0.0 and result["parity"][0]["final_weights"]["passed"]


def test_runs_from_different_initial_weights_are_not_comparable(tmp_path):
    torch_run = make_run(tmp_path, "torch", "torch", LOSSES, init="a")
    tf_run = make_run(tmp_path, "tf", "tf", LOSSES, init="b")
    code, result = verdicts(tmp_path, torch_run, tf_run, extra=["--no-onnx"])
    assert code == 1 and "run.py --parity" in result["parity"][0]["reason"]


def test_final_weights_beyond_tolerance_name_the_tensor(tmp_path):
    moved = WEIGHT.copy()
    moved[5, 3] += 1e-3
    torch_run, tf_run = make_run(tmp_path, "torch", "torch", LOSSES), make_run(tmp_path, "tf", "tf", LOSSES, moved)
    _, result = verdicts(tmp_path, torch_run, tf_run, extra=["--no-onnx"])
    weights = result["parity"][0]["final_weights"]
    assert not weights["passed"] and weights["failed"] == ["fc.weight"]


def test_onnx_exports_are_judged_against_their_framework_and_each_other(tmp_path):
    torch_run = make_run(tmp_path, "torch", "torch", LOSSES, onnx=True)
    tf_run = make_run(tmp_path, "tf", "tf", LOSSES, onnx=True)
    code, result = verdicts(tmp_path, torch_run, tf_run)
    assert code == 0 and result["verdicts"]["onnx"] == "pass"
    assert [o["check"] for o in result["onnx"]] == ["torch-onnx vs torch", "tf-onnx vs tf", "tf-onnx vs torch-onnx"]
    assert all(o["scale_rel"] < 1e-6 for o in result["onnx"])
    broken = WEIGHT.copy()
    broken[:, 0] = 0.0  # an export that lost a class, as the run wrote it (sealed: no damage)
    linear_onnx(tf_run / "final.onnx", broken)
    code, result = verdicts(tmp_path, torch_run, seal(tf_run))
    assert code == 1 and [o["passed"] for o in result["onnx"]] == [True, False, False]
    assert result["verdicts"]["integrity"] == "pass"
    (tf_run / "final.onnx").write_bytes(b"not onnx")
    code, result = verdicts(tmp_path, torch_run, seal(tf_run))
    assert code == 1 and "onnxruntime could not run" in result["onnx"][1]["reason"]


def test_an_export_altered_after_the_run_fails_onnx_by_name(tmp_path, capsys):
    torch_run = make_run(tmp_path, "torch", "torch", LOSSES, onnx=True)
    tf_run = make_run(tmp_path, "tf", "tf", LOSSES, onnx=True)
    linear_onnx(tf_run / "final.onnx", WEIGHT * 2)  # a valid ONNX file, not the one recorded
    code, result = verdicts(tmp_path, torch_run, tf_run)
    assert code == 1 and result["verdicts"]["onnx"] == "fail" and result["verdicts"]["parity"] == "fail"
    assert [o["passed"] for o in result["onnx"]] == [True, False]  # no export comparison with a damaged one
    assert result["onnx"][1]["reason"] == f"record {tf_run}: final.onnx: sha256 differs from the record"
    assert f"record {tf_run}: final.onnx: sha256 differs from the record" in capsys.readouterr().out


def test_discovered_incomplete_runs_are_skipped_and_bad_input_writes_nothing(tmp_path, capsys):
    runs = tmp_path / "runs"
    make_run(runs, "done-1", "torch", LOSSES), make_run(runs, "done-2", "torch", LOSSES)
    running = make_run(runs, "running", "torch", LOSSES, status="running")
    code, result = verdicts(tmp_path, extra=["--runs-dir", str(runs), "--no-onnx"])
    assert code == 0 and result["skipped"] == [{"run": str(running), "reason": "status 'running' (interrupted?)"}]
    assert result["verdicts"]["determinism"] == "pass" and len(result["runs"]) == 2
    assert f"skipped: {running} (status 'running'" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_:
        compare.main([str(tmp_path / "nowhere"), "--reports", str(tmp_path / "other")])
    assert exit_.value.code == 2 and not (tmp_path / "other").exists()
    for runs_dir in (tmp_path / "none", tmp_path / "reports"):  # no folder; a folder without a record
        with pytest.raises(SystemExit) as exit_:
            compare.main(["--runs-dir", str(runs_dir), "--reports", str(tmp_path / "other")])
        assert exit_.value.code == 2 and not (tmp_path / "other").exists()
    (running / "manifest.json").write_text("{not json")
    with pytest.raises(SystemExit) as exit_:
        compare.main([str(running), "--reports", str(tmp_path / "other")])
    assert exit_.value.code == 2 and not (tmp_path / "other").exists()


# -- integrity: the verdicts read the files, not only the manifest --------------------------

def test_flipped_final_weights_fail_determinism_naming_the_file(tmp_path, capsys):
    a, b = make_run(tmp_path, "a", "torch", LOSSES), make_run(tmp_path, "b", "torch", LOSSES)
    assert flip(b / "final.safetensors") == WEIGHT.nbytes  # the file is smaller than 4000 bytes: all its data
    code, result = verdicts(tmp_path, a, b, extra=["--no-onnx"])
    said = f"record {b}: final.safetensors: sha256 differs from the record"
    assert code == 1 and result["verdicts"]["determinism"] == "fail" and result["verdicts"]["integrity"] == "fail"
    assert result["determinism"][0]["reason"] == said and result["determinism"][0]["first_difference"] is None
    assert problems(result, a) == []
    assert problems(result, b) == [("final.safetensors", "sha256 differs from the record")]
    entry = result["integrity"][1]["problems"][0]
    assert entry["expected"] == json.loads((b / "manifest.json").read_text())["summary"]["final_sha256"]
    assert entry["actual"] == sha256_file(b / "final.safetensors") != entry["expected"]
    out = capsys.readouterr().out
    assert "determinism  fail" in out and f"  {said}\n" in out and f"determinism torch: {said}" in out
    report = (tmp_path / "reports" / "compare.md").read_text()
    assert f"| {b} | final.safetensors | sha256 differs from the record |" in report


def test_an_altered_epoch_weight_file_fails_by_name(tmp_path, capsys):
    a, b = make_run(tmp_path, "a", "torch", LOSSES), make_run(tmp_path, "b", "torch", LOSSES)
    save_canonical(b / "weights" / "epoch_000.safetensors", {"fc.weight": WEIGHT.T + 1.0})
    code, result = verdicts(tmp_path, a, b, extra=["--no-onnx"])
    assert code == 1 and result["verdicts"]["determinism"] == "fail"
    assert problems(result, b) == [("weights/epoch_000.safetensors", "sha256 differs from the record")]
    assert f"record {b}: weights/epoch_000.safetensors: sha256 differs from the record" in capsys.readouterr().out


@pytest.mark.parametrize("name", ["weights/epoch_000.safetensors", "final.safetensors"])
def test_a_deleted_file_fails_as_missing(tmp_path, capsys, name):
    torch_run, tf_run = make_run(tmp_path, "torch", "torch", LOSSES), make_run(tmp_path, "tf", "tf", LOSSES)
    rerun = make_run(tmp_path, "torch-2", "torch", LOSSES)
    (tf_run / name).unlink()
    code, result = verdicts(tmp_path, torch_run, tf_run, rerun, extra=["--no-onnx"])
    assert code == 1 and result["verdicts"] == {"determinism": "pass", "parity": "fail", "onnx": "not checked",
                                                "parity_loss_max_rel": None, "integrity": "fail"}
    assert problems(result, tf_run) == [(name, "missing")]
    assert result["parity"][0]["reason"] == f"record {tf_run}: {name}: missing"
    assert f"record {tf_run}: {name}: missing" in capsys.readouterr().out


def test_an_older_record_without_a_file_list_is_verified_on_what_it_records(tmp_path, capsys):
    a = make_run(tmp_path, "a", "torch", LOSSES, files=False)
    b = make_run(tmp_path, "b", "torch", LOSSES, files=False)
    code, result = verdicts(tmp_path, a, b, extra=["--no-onnx"])
    assert code == 0 and result["verdicts"]["integrity"] == "pass"
    assert result["integrity"][0]["unrecorded"] == ["final_test_logits.npy", "metrics.jsonl"]  # read, not verified
    assert f"no recorded sha256 (older record) in {a}: final_test_logits.npy, metrics.jsonl" in capsys.readouterr().out
    flip(b / "final.safetensors")
    code, result = verdicts(tmp_path, a, b, extra=["--no-onnx"])
    assert code == 1 and result["verdicts"]["determinism"] == "fail"
    assert problems(result, b) == [("final.safetensors", "sha256 differs from the record")]


# -- misuse: what was named must be usable -------------------------------------------------

def test_one_run_named_twice_is_counted_once_and_checks_nothing(tmp_path, capsys):
    a = make_run(tmp_path, "a", "torch", LOSSES)
    again = tmp_path / "a" / ".." / "a"  # another spelling of the same directory
    code, result = verdicts(tmp_path, a, again, extra=["--no-onnx"])
    assert code == 1 and result["runs"] == [str(a)] and result["verdicts"]["determinism"] == "not checked"
    assert result["named_twice"] == [{"run": str(a), "as": str(again)}] and result["not_compared"] == [str(a)]
    out = capsys.readouterr().out
    assert f"named twice: {again} (the same run as {a})" in out
    assert f"not compared: {a} has no run with the same settings" in out


def test_an_incomplete_named_run_is_said_and_is_no_pass(tmp_path, capsys):
    a, b = make_run(tmp_path, "a", "torch", LOSSES), make_run(tmp_path, "b", "torch", LOSSES)
    running = make_run(tmp_path, "running", "torch", LOSSES, status="running")
    code, result = verdicts(tmp_path, a, b, running, extra=["--no-onnx"])
    assert code == 1 and result["verdicts"]["determinism"] == "pass"  # the two good ones still agree
    assert [s["run"] for s in result["skipped"]] == [str(running)]
    assert f"skipped: {running} (status 'running' (interrupted?))" in capsys.readouterr().out


def test_a_named_run_without_a_partner_is_said_and_is_no_pass(tmp_path, capsys):
    a, b = make_run(tmp_path, "a", "torch", LOSSES), make_run(tmp_path, "b", "torch", LOSSES)
    lone = make_run(tmp_path, "lone", "torch", LOSSES, limit=32)  # other settings: no rerun, no tf twin
    code, result = verdicts(tmp_path, a, b, lone, extra=["--no-onnx"])
    assert code == 1 and result["verdicts"]["determinism"] == "pass" and result["not_compared"] == [str(lone)]
    assert f"not compared: {lone} has no run with the same settings" in capsys.readouterr().out
    code, result = verdicts(tmp_path, a, b, extra=["--no-onnx"])
    assert code == 0 and result["not_compared"] == [] and result["named_twice"] == []
