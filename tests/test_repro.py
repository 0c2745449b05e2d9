"""repro/run.py end to end, in subprocesses (this process never loads a framework).

Short runs on a slice of the digits set: determinism (two runs, bitwise-equal weights and
equal metrics), resume after an interruption (bitwise equal to the uninterrupted run), the
record's files (bad options: tests/test_run_options.py; faults: tests/test_run_faults.py).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from parity import frameworks

pytestmark = [pytest.mark.torch, pytest.mark.tf]  # runs both frameworks (in subprocesses)
ROOT = Path(__file__).resolve().parent.parent
# ResNet-18 on the 8x8 digits: TF traces MeDiANet's step for ~70 s, ResNet-18's in seconds
QUICK = ["--recipe", "medianet", "--model", "resnet18", "--limit", "96", "--epochs", "2", "--batch-size", "32",
         "--no-progress"]


def run(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, str(ROOT / "repro" / "run.py"), *args], cwd=ROOT,
                            capture_output=True, text=True, timeout=900)
    if check and result.returncode != 0:
        raise AssertionError(f"run.py {' '.join(args)} exited {result.returncode}:\n{result.stderr[-3000:]}")
    return result


def epochs_of(directory: Path) -> list[dict]:
    lines = [json.loads(line) for line in (directory / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in line.items() if k != "wall_s"} for line in lines]


@pytest.fixture(scope="module", params=["torch", "tf"])
def framework_runs(request, tmp_path_factory):
    """Two full runs and one interrupted-then-resumed run of the same settings."""
    framework, base = request.param, tmp_path_factory.mktemp(f"runs-{request.param}")
    first, second, resumed = base / "first", base / "second", base / "resumed"
    run("--framework", framework, *QUICK, "--out", str(first))
    run("--framework", framework, *QUICK, "--out", str(second), "--no-onnx")
    interrupted = run("--framework", framework, *QUICK, "--out", str(resumed), "--no-onnx", "--stop-after-epochs", "1",
                      check=False)
    return framework, first, second, resumed, interrupted


def test_a_run_writes_a_complete_record(framework_runs):
    framework, first, *_ = framework_runs
    manifest = json.loads((first / "manifest.json").read_text())
    assert manifest["status"] == "complete"
    assert manifest["settings"]["framework"] == framework and manifest["seed"] == 153
    assert {"python", "numpy", "onnx"} <= set(manifest["versions"])
    assert manifest["environment"]["threads"]["intra_op"] == 1
    assert manifest["git"]["commit"] and len(manifest["dataset"]["fingerprint"]) == 64
    epochs = [e for e in epochs_of(first) if e["kind"] == "epoch"]
    steps = [e for e in epochs_of(first) if e["kind"] == "step"]
    assert [e["epoch"] for e in epochs] == [0, 1] and len(steps) == 2 * 3  # 96 samples / 32
    assert all((first / "weights" / e["weights"]).is_file() and len(e["weights_sha256"]) == 64 for e in epochs)
    for name in ("best.safetensors", "final.safetensors", "final.onnx", "final_test_logits.npy"):
        assert (first / name).is_file(), name
    summary = manifest["summary"]
    assert 0.0 <= summary["final_test"]["acc"] <= 1.0 and 0.0 <= summary["final_test"]["auc"] <= 1.0


def test_same_seed_runs_are_bitwise_identical(framework_runs):
    _, first, second, *_ = framework_runs
    summaries = [json.loads((d / "manifest.json").read_text())["summary"] for d in (first, second)]
    assert summaries[0]["final_sha256"] == summaries[1]["final_sha256"]
    assert epochs_of(first) == epochs_of(second)  # every step's loss and lr, every epoch metric and sha256


def test_an_interrupted_run_resumes_to_the_same_weights(framework_runs):
    _, first, _, resumed, interrupted = framework_runs
    assert interrupted.returncode == 3, interrupted.stderr[-2000:]
    assert "continue with --resume" in interrupted.stderr
    assert json.loads((resumed / "manifest.json").read_text())["status"] == "running"  # does not look complete
    run("--resume", str(resumed), "--no-progress")
    manifest = json.loads((resumed / "manifest.json").read_text())
    assert manifest["status"] == "complete"
    assert manifest["summary"]["final_sha256"] == json.loads((first / "manifest.json").read_text())["summary"]["final_sha256"]
    assert epochs_of(resumed) == epochs_of(first)


def test_a_run_is_never_overwritten_and_a_complete_one_not_resumed(framework_runs):
    framework, first, *_ = framework_runs
    before = (first / "manifest.json").read_bytes()
    result = run("--framework", framework, *QUICK, "--out", str(first), check=False)
    assert result.returncode == 2 and "already holds a complete run" in result.stderr
    result = run("--resume", str(first), check=False)
    assert result.returncode == 2 and "already complete" in result.stderr
    assert (first / "manifest.json").read_bytes() == before


@pytest.mark.slow
@pytest.mark.parametrize("framework", ["torch", "tf"])
def test_bfloat16_mixed_precision_is_reproducible_and_keeps_float32_weights(framework, tmp_path):
    """Padded to 32 px: on the bare 8 px digits ResNet-18's layer3.0.conv1 sees a 1x1 map with
    stride 2, where torch's CPU bfloat16 weight gradient is garbage (test_training_twins.py)."""
    from canon.weights import load_canonical

    common = ["--framework", framework, *QUICK, "--input-size", "32", "--no-onnx"]
    runs = {name: tmp_path / name for name in ("bf16-a", "bf16-b", "f32")}
    for name, out in runs.items():
        run(*common, "--precision", "float32" if name == "f32" else "bfloat16", "--out", str(out))
    shas = [json.loads((d / "manifest.json").read_text())["summary"]["final_sha256"] for d in runs.values()]
    assert shas[0] == shas[1] != shas[2]  # reproducible, and not the float32 run
    assert json.loads((runs["bf16-a"] / "manifest.json").read_text())["settings"]["precision"] == "bfloat16"
    assert {t.dtype for t in load_canonical(runs["bf16-a"] / "final.safetensors").values()} == {np.dtype(np.float32)}
    # the same initial weights: the first loss differs from float32's by bfloat16 rounding only
    loss16, loss32 = (next(e["loss"] for e in epochs_of(runs[n]) if e["kind"] == "step") for n in ("bf16-a", "f32"))
    assert loss16 != loss32 and abs(loss16 - loss32) < 2e-2 * loss32


def test_help_documents_every_option():
    text = run("--help").stdout
    for option in ("--framework", "--seed", "--recipe", "--procedure", "--model", "--model-config", "--dataset",
                   "--flag", "--size", "--data-dir", "--limit", "--epochs", "--batch-size", "--input-size", "--resize",
                   "--stage", "--quirk", "--crop", "--eval-resize", "--init-from", "--init-weights", "--parity", "--precision", "--runs-dir", "--out", "--resume", "--threads", "--device", "--nondeterministic", "--no-onnx",
                   "--no-progress"):
        assert option in text, option


def test_chest_recipe_on_synthetic_chestmnist_reports_the_per_label_table(tmp_path):
    from repro.data.datasets import write_synthetic_medmnist

    write_synthetic_medmnist(tmp_path / "data", "chestmnist", 28, counts=(64, 32, 32), seed=1)
    out = tmp_path / "run"
    run("--framework", "torch", "--recipe", "chest_multilabel", "--model", "resnet18", "--dataset", "medmnist",
        "--flag", "chestmnist", "--data-dir", str(tmp_path / "data"), "--epochs", "1", "--no-onnx", "--no-progress",
        "--out", str(out))
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["dataset"]["task"] == "multi-label, binary-class" and manifest["model_config"]["num_classes"] == 14
    test = manifest["summary"]["best_test"]
    assert len(test["per_label_auc"]) == 14
    assert "normal_abnormal_acc" not in test  # ChestMNIST has no "No Finding" column
    steps = [e for e in epochs_of(out) if e["kind"] == "step"]
    assert len(steps) == 2 and all(e["lr"] == 5e-5 for e in steps)  # batch 32, constant Adam lr


def test_knn_procedure_trains_nothing_votes_and_scores_auc_from_the_votes(tmp_path):
    knn = {}
    for name, quirk in (("sound", []), ("quirk", ["--quirk", "knn_auc_zero"])):
        out = tmp_path / name
        run("--framework", "tf", "--recipe", "medmnist_plus", "--procedure", "knn", "--model", "resnet18",
            "--input-size", "16", "--limit", "64", "--no-progress", "--out", str(out), *quirk)
        knn[name] = json.loads((out / "manifest.json").read_text())["summary"]["knn"]
        assert epochs_of(out) == []  # no optimizer step
    assert set(knn["sound"]) == {"val_acc", "test_acc", "val_auc", "test_auc"} and 0.0 <= knn["sound"]["test_acc"] <= 1.0
    assert 0.5 < knn["sound"]["val_auc"] <= 1.0  # the votes rank the classes better than chance
    assert knn["quirk"] == {**knn["sound"], "val_auc": 0.0, "test_auc": 0.0}  # the seed code's 0, the same votes


@pytest.mark.parametrize("framework", ["torch", pytest.param("tf", marks=pytest.mark.slow)])
def test_linear_probing_keeps_the_frozen_network_in_eval_mode_unless_the_quirk_is_asked(tmp_path, framework):
    from canon.weights import load_canonical

    changed = {}
    for name, quirk in (("sound", []), ("quirk", ["--quirk", "linear_probing_train_mode"])):
        out = tmp_path / name
        run("--framework", framework, "--recipe", "medmnist_plus", "--procedure", "linear_probing", "--model",
            "resnet18", "--input-size", "16", "--limit", "32", "--epochs", "1", "--no-onnx", "--no-progress",
            "--out", str(out), *quirk)
        init, final = (load_canonical(out / f"{kind}.safetensors") for kind in ("init", "final"))
        changed[name] = sorted(k for k in init if not np.array_equal(init[k], final[k]))
    assert changed["sound"] == ["fc.bias", "fc.weight"]  # only the head trained, BN statistics fixed
    statistics = {k for k in changed["quirk"] if k.endswith(("running_mean", "running_var"))}
    assert set(changed["quirk"]) - statistics == {"fc.bias", "fc.weight"} and len(statistics) == 2 * 20  # every BN drifted


@pytest.mark.parametrize("framework", ["torch", pytest.param("tf", marks=pytest.mark.slow)])  # tf: 37 s
def test_segmentation_recipe_trains_a_unet_with_seeded_augmentation(tmp_path, framework):
    from repro.data.datasets import write_synthetic_segmentation

    write_synthetic_segmentation(tmp_path / "data", counts=(16, 8, 8), size=40, seed=2)
    common = ["--recipe", "segmentation", "--model", "unet", "--model-config", '{"widths": [4, 8, 16]}',
              "--dataset", "segmentation", "--data-dir", str(tmp_path / "data"), "--resize", "32", "--epochs", "2",
              "--no-progress"]
    first, second = tmp_path / "first", tmp_path / "second"
    run("--framework", framework, *common, "--out", str(first))
    run("--framework", framework, *common, "--no-onnx", "--out", str(second))
    manifest = json.loads((first / "manifest.json").read_text())
    assert manifest["model_config"] == {"in_channels": 3, "out_channels": 1, "widths": [4, 8, 16]}
    epochs = [e for e in epochs_of(first) if e["kind"] == "epoch"]
    assert all(0.0 <= e["val_dice"] <= 1.0 for e in epochs) and epochs[-1]["best_epoch"] in (0, 1)
    assert 0.0 <= manifest["summary"]["best_test"]["dice"] <= 1.0
    assert (first / "final.onnx").is_file()
    assert epochs_of(first) == epochs_of(second)  # augmentation is seeded per batch
    # albumentations imports torch when it can: the TF run must still hold TensorFlow alone
    assert manifest["summary"]["libraries_loaded"] == list(frameworks.get(framework).modules)


def test_a_recipe_that_does_not_fit_the_data_is_refused(tmp_path):
    result = run("--framework", "torch", "--recipe", "segmentation", "--model", "unet", "--out", str(tmp_path / "r"),
                 check=False)
    assert result.returncode == 2 and "does not fit the 'multi-class' data of 'digits'" in result.stderr


@pytest.mark.slow
def test_aecnn_trains_its_three_stages_and_stage_3_starts_from_1_and_2(tmp_path):
    """Stage 3 starts from stage 1's classifier (under "classifier.") and stage 2's autoencoder;
    its TF twin starts from the same torch runs, through the canonical format, bit for bit."""
    from repro.data.datasets import write_synthetic_medmnist
    from canon.weights import load_canonical

    write_synthetic_medmnist(tmp_path / "data", "chestmnist", 128, counts=(16, 8, 8), seed=3)
    common = ["--recipe", "aecnn", "--dataset", "medmnist", "--flag", "chestmnist", "--size", "128",
              "--data-dir", str(tmp_path / "data"), "--epochs", "1", "--batch-size", "8", "--no-onnx", "--no-progress"]
    small = '{"block_config": [1, 1, 1, 1]}'  # DenseNet-121's layout with one layer per block: seconds, not minutes
    s1, s2 = tmp_path / "s1", tmp_path / "s2"
    run("--framework", "torch", *common, "--stage", "1", "--model-config", small, "--resize", "40", "--crop", "32",
        "--eval-resize", "40", "--out", str(s1))
    run("--framework", "torch", *common, "--stage", "2", "--crop", "32", "--eval-resize", "32", "--out", str(s2))
    stage3 = [*common, "--stage", "3", "--model-config", '{"classifier_blocks": [1, 1, 1, 1]}', "--crop", "128",
              "--eval-resize", "128", "--init-from", str(s1), "--init-from", str(s2)]
    for framework in ("torch", "tf"):
        run("--framework", framework, *stage3, "--out", str(tmp_path / f"s3-{framework}"))
    classifier, autoencoder = load_canonical(s1 / "best.safetensors"), load_canonical(s2 / "best.safetensors")
    expected = {**{f"classifier.{k}": v for k, v in classifier.items()}, **autoencoder}
    for framework in ("torch", "tf"):
        out = tmp_path / f"s3-{framework}"
        start = load_canonical(out / "init.safetensors")
        assert start.keys() == expected.keys() and all(np.array_equal(start[k], expected[k]) for k in expected)
        manifest = json.loads((out / "manifest.json").read_text())
        assert [(s["stage"], s["prefix"]) for s in manifest["init_from"]] == [(1, "classifier."), (2, "")]
        assert len(manifest["summary"]["best_test"]["per_label_auc"]) == 14
        steps = [e for e in epochs_of(out) if e["kind"] == "step"]
        assert len(steps) == 2 and all(e["lr"] == 1e-4 and np.isfinite(e["loss"]) for e in steps)
    stage2 = json.loads((s2 / "manifest.json").read_text())["summary"]
    assert set(stage2["best_test"]) == {"loss"}  # a reconstruction: MSE only, no label metrics


@pytest.mark.parametrize("args, message", [
    (["--recipe", "aecnn"], "choose stage 1, 2 or 3"),
    (["--recipe", "medianet", "--stage", "2"], "only the aecnn recipe has stages"),
    (["--recipe", "aecnn", "--stage", "3"], "give --init-from once for each"),
    (["--recipe", "aecnn", "--stage", "2", "--model", "resnet18"], "trains 'aecnn_autoencoder', not 'resnet18'"),
    (["--recipe", "aecnn", "--stage", "1", "--init-from", "/nonexistent/run"], "no manifest.json"),
    (["--recipe", "chest_multilabel"], "does not fit the 'multi-class' data of 'digits'"),
])
def test_bad_aecnn_options_fail_before_anything_is_written(tmp_path, args, message):
    out = tmp_path / "run"
    result = run("--framework", "torch", *args, "--out", str(out), check=False)
    assert result.returncode == 2 and message in result.stderr
    assert not out.exists()


def test_a_crop_larger_than_the_images_is_refused_with_the_sizes_that_fit(tmp_path):
    from repro.data.datasets import write_synthetic_medmnist

    write_synthetic_medmnist(tmp_path / "data", "chestmnist", 64, counts=(8, 8, 8), seed=3)
    result = run("--framework", "torch", "--recipe", "aecnn", "--stage", "2", "--dataset", "medmnist", "--flag",
                 "chestmnist", "--size", "64", "--data-dir", str(tmp_path / "data"), "--out", str(tmp_path / "r"),
                 check=False)
    # the report's 128 px patches of 1024 px images, scaled to 64 px images: 8
    assert result.returncode == 2 and "crop 128 is larger than the training images" in result.stderr
    assert "--crop 8 --eval-resize 8" in result.stderr
    assert not (tmp_path / "r").exists()
