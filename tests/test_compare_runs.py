"""repro/compare.py on hand-made run records: no framework is loaded, the verdicts are known.

A record here is what run.py writes, reduced to what compare.py reads: the manifest, the
metrics lines, the final canonical weights, the test predictions and, for the ONNX question,
a one-layer ONNX model of the digits (a linear map from 64 pixels to 10 logits).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from repro import compare
from spec.weights import save_canonical

SETTINGS = {"recipe": "medianet", "recipe_overrides": {"epochs": 1, "batch_size": 32, "seed": 153},
            "model": "linear", "model_config": {}, "dataset": "digits", "flag": None, "size": 28, "data_dir": None,
            "limit": 64, "threads": 1, "device": "cpu", "deterministic": True, "precision": "float32",
            "parity": True, "onnx": True, "init_from": []}
WEIGHT = np.random.default_rng(0).standard_normal((64, 10)).astype(np.float32)


def digits_inputs() -> np.ndarray:
    from repro.loop import make_batch
    from spec.data import load_digits, subset
    from spec.recipes import get_recipe

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
             **settings):
    directory = root / name
    directory.mkdir(parents=True)
    save_canonical(directory / "final.safetensors", {"fc.weight": weight.T.copy()})
    logits = digits_inputs().reshape(64, -1) @ weight
    np.save(directory / "final_test_logits.npy", logits)
    if onnx:
        linear_onnx(directory / "final.onnx", weight)
    steps = [{"kind": "step", "epoch": 0, "step": i, "loss": loss, "lr": 1e-3 * (1 - i / 10)}
             for i, loss in enumerate(losses)]
    epoch = {"kind": "epoch", "epoch": 0, "val_loss": float(losses[-1]), "val_acc": 0.5, "wall_s": 1.0}
    (directory / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in (*steps, epoch)))
    from spec.weights import digest

    manifest = {"status": status, "seed": 153, "settings": {**SETTINGS, **settings, "framework": framework},
                "init": {"digest": init}, "summary": {"final_sha256": digest({"fc.weight": weight})}}
    (directory / "manifest.json").write_text(json.dumps(manifest))
    return directory


LOSSES = [2.3, 2.1, 1.9, 1.7]


def verdicts(tmp_path, *dirs, extra=()):
    code = compare.main([*map(str, dirs), "--reports", str(tmp_path / "reports"), *extra])
    return code, json.loads((tmp_path / "reports" / "compare.json").read_text())


def test_identical_reruns_are_bitwise_and_equal_twins_pass_parity(tmp_path):
    runs = [make_run(tmp_path, f"{fw}-{k}", fw, LOSSES) for fw in ("torch", "tf") for k in (1, 2)]
    code, result = verdicts(tmp_path, *runs, extra=["--no-onnx"])
    assert code == 0
    assert result["verdicts"] == {"determinism": "pass", "parity": "pass", "onnx": "not checked",
                                  "parity_loss_max_rel": 0.0}
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
    broken[:, 0] = 0.0  # an export that lost a class
    linear_onnx(tf_run / "final.onnx", broken)
    code, result = verdicts(tmp_path, torch_run, tf_run)
    assert code == 1 and [o["passed"] for o in result["onnx"]] == [True, False, False]
    (tf_run / "final.onnx").write_bytes(b"not onnx")
    code, result = verdicts(tmp_path, torch_run, tf_run)
    assert code == 1 and "onnxruntime could not run" in result["onnx"][1]["reason"]


def test_incomplete_runs_are_skipped_and_bad_input_writes_nothing(tmp_path):
    done = make_run(tmp_path, "done", "torch", LOSSES)
    running = make_run(tmp_path, "running", "torch", LOSSES, status="running")
    code, result = verdicts(tmp_path, done, running, extra=["--no-onnx"])
    assert code == 0 and result["skipped"][0]["run"] == str(running)
    assert result["verdicts"]["determinism"] == "not checked"
    with pytest.raises(SystemExit) as exit_:
        compare.main([str(tmp_path / "nowhere"), "--reports", str(tmp_path / "other")])
    assert exit_.value.code == 2 and not (tmp_path / "other").exists()
    with pytest.raises(SystemExit):
        compare.main(["--runs-dir", str(tmp_path / "empty"), "--reports", str(tmp_path / "other")])
    assert not (tmp_path / "other").exists()
