"""Training-trajectory parity, a short run of every recipe: torch and tf (and the Keras twin on
Keras 3's other backends) train the same steps from the same weights (run.py --parity: torch's
initialisation, dropout off) and repro/compare.py judges the pair.

The runs are float64.  In float32 the two frameworks' round-off differs from the first step,
and Adam turns it into whole +-lr steps wherever a gradient is round-off sized, so float32
trajectories part within a few steps (README: measured); float64 round-off is 1e9 times
smaller and stays below 1e-12 over these runs.  So a float64 pair that differs by more than
FLOAT64_SEMANTIC (per-step loss; final weights on the scale of the largest tensor) shows a
semantic difference (an eps in another place, a missing penalty, a different batch), not
round-off; the comparison's own tolerance (1e-5 per tensor, canon.tolerances) is checked too.  The knn procedure trains nothing and has no trajectory.
"""

from __future__ import annotations

import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from parity import frameworks
from repro import compare

pytestmark = [pytest.mark.torch, pytest.mark.tf]  # both frameworks, each in run.py subprocesses
ROOT = Path(__file__).resolve().parents[2]
FLOAT64_SEMANTIC = 1e-10
PARITY = ["--parity", "--precision", "float64", "--no-onnx", "--no-progress"]
RESNET_28 = ["--model", "resnet18", "--dataset", "medmnist", "--size", "28", "--limit", "16", "--epochs", "1",
             "--batch-size", "8"]
SMALL_DENSENET = '{"block_config": [1, 1, 1, 1]}'


def train(out: Path, framework: str, args: list[str]) -> Path:
    command = [sys.executable, str(ROOT / "repro" / "run.py"), "--framework", framework, *args, *PARITY,
               "--out", str(out)]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, f"{framework} run failed ({result.returncode}):\n{result.stderr[-3000:]}"
    return out


def train_all(folder: Path, args: list[str], names=("torch", "tf")) -> list[Path]:
    """Each framework's run in a process of its own, two at a time (two cores)."""
    with ThreadPoolExecutor(2) as pool:
        runs = [pool.submit(train, folder / framework, framework, args) for framework in names]
        return [run.result() for run in runs]


def train_pair(folder: Path, args: list[str]) -> tuple[Path, Path]:
    """torch's run and tf's."""
    return tuple(train_all(folder, args))


def judged(pair: tuple[Path, Path]) -> dict:
    reference, candidate = (compare.Run.open(directory) for directory in pair)
    for run in (reference, candidate):  # one framework per process
        assert run.summary["libraries_loaded"] == list(frameworks.get(run.framework).modules), (
            run.label(), run.summary["libraries_loaded"])
    result = compare.judge_parity(reference, candidate)
    assert result["comparable"], result.get("reason")
    steps = result["steps"]
    assert steps["count"] >= 2 and steps["lr_max_rel"] == 0.0  # the same learning-rate table, to the bit
    for part in ("steps", "epochs", "final_weights", "test_predictions"):
        assert result[part]["passed"], (part, result[part])
    assert steps["loss_max_rel"] < FLOAT64_SEMANTIC, steps
    assert result["final_weights"]["global_rel"] < FLOAT64_SEMANTIC, result["final_weights"]
    return result


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from repro.data.datasets import write_synthetic_medmnist, write_synthetic_segmentation

    root = tmp_path_factory.mktemp("data")
    for flag, size in (("pathmnist", 28), ("chestmnist", 28), ("chestmnist", 128)):
        write_synthetic_medmnist(root, flag, size, counts=(32, 16, 16), seed=5)
    write_synthetic_segmentation(root, counts=(16, 8, 8), size=40, seed=5)
    return root


RECIPES = {
    # MeDiANet-base69 with the global head (its L2 penalties included) on the digits padded to 32 px
    "medianet": ["--recipe", "medianet", "--model", "medianet_base69", "--model-config", '{"head": "global"}',
                 "--input-size", "32", "--limit", "16", "--epochs", "1", "--batch-size", "8"],
    "medmnist_plus-end_to_end": ["--recipe", "medmnist_plus", *RESNET_28, "--flag", "pathmnist", "--input-size", "32"],
    "medmnist_plus-linear_probing": ["--recipe", "medmnist_plus", "--procedure", "linear_probing", *RESNET_28,
                                     "--flag", "pathmnist", "--input-size", "32"],
    "chest_multilabel": ["--recipe", "chest_multilabel", *RESNET_28, "--flag", "chestmnist"],
    "segmentation": ["--recipe", "segmentation", "--model", "unet", "--model-config", '{"widths": [4, 8, 16]}',
                     "--dataset", "segmentation", "--resize", "32", "--epochs", "1", "--batch-size", "8"],
}


# the default recipe (the demo's) in `make test`, every other in `make test-slow`
@pytest.mark.parametrize("recipe", [name if name == "medianet" else pytest.param(name, marks=pytest.mark.slow)
                                    for name in sorted(RECIPES)])
def test_a_recipe_trains_the_same_trajectory_in_both_frameworks(recipe, data, tmp_path):
    args = RECIPES[recipe]
    judged(train_pair(tmp_path, [*args, "--data-dir", str(data)] if "--dataset" in args else args))


# in `make test-backends`: on JAX alone it took 182 s of a fresh make test (eager JAX compiles each op)
@pytest.mark.backend_rows
@pytest.mark.parametrize("backend", frameworks.backends())
def test_the_keras_twin_trains_the_same_trajectory_on_every_keras_backend(backend, tmp_path):
    """The default recipe (MeDiANet's L2 penalties included) with the Keras twin on one of Keras
    3's other backends: the trainer's written-out update through that backend's own autodiff,
    against torch, per step within FLOAT64_SEMANTIC."""
    judged(tuple(train_all(tmp_path, RECIPES["medianet"], ("torch", backend))))


# MedMNIST+'s ten architectures, one epoch of end-to-end training on the synthetic PathMNIST at
# 28 px padded to 32 (the recipe's padding after normalisation, each architecture's own mean/std).
# The timm families train at their zoo cases' small configurations (run.py gives a model that fixes
# its input size the padded size); the torchvision CNNs at full width.
_VIT = {"patch_size": 8, "embed_dim": 32, "depth": 2, "num_heads": 2}
SMALL = {
    "efficientnet_b0": {"channel_multiplier": 0.25, "depth_multiplier": 0.5},
    **dict.fromkeys(("vit_base_patch16_224", "vit_base_patch16_224.dino", "vit_base_patch16_clip_224",
                     "eva02_base_patch16_clip_224"), _VIT),
    "samvit_base_patch16": {"img_size": 64, "patch_size": 8, "embed_dim": 32, "depth": 4, "num_heads": 2,
                            "window_size": 3, "global_attn_indexes": [1, 3], "neck_channels": 16},
}
# All in the slow tier (`make test` trains the small ViT through this recipe in both frameworks in
# its data-parallel runs, parity/tests/test_data_parallel.py), VGG-16 and AlexNet (138 M and 61 M
# parameters: gigabytes of float64 weights and optimizer state in each of two processes) in its
# paper-size part, one at a time.  Every family's semantics are proved layer by layer in every suite.
EVERY_SUITE = ()
FULL_SIZE = ("vgg16", "alexnet")


def _tier(model: str):
    marks = [] if model in EVERY_SUITE else [pytest.mark.full_size] if model in FULL_SIZE else [pytest.mark.slow]
    return pytest.param(model, marks=marks)
ARCHITECTURES = {
    "vgg16": {}, "alexnet": {}, "resnet18": {}, "densenet121": {"block_config": [2, 2, 2, 2]}, **SMALL,
}


@pytest.mark.parametrize("model", [_tier(m) for m in ARCHITECTURES])
def test_every_medmnist_plus_architecture_trains_the_same_trajectory(model, data, tmp_path):
    size = ["--input-size", "224"] if model == "alexnet" else ["--input-size", "32"]  # AlexNet's 6x6 flatten
    args = ["--recipe", "medmnist_plus", "--model", model, "--model-config", json.dumps(ARCHITECTURES[model]),
            "--dataset", "medmnist", "--flag", "pathmnist", "--size", "28", "--data-dir", str(data),
            "--limit", "16", "--epochs", "1", "--batch-size", "8", *size]
    judged(train_pair(tmp_path, args))


@pytest.mark.slow
def test_the_three_aecnn_stages_train_the_same_trajectories(data, tmp_path):
    """Stage 3 starts both frameworks from the torch stage-1 and stage-2 runs' best weights."""
    common = ["--recipe", "aecnn", "--dataset", "medmnist", "--flag", "chestmnist", "--size", "128",
              "--data-dir", str(data), "--limit", "16", "--epochs", "1", "--batch-size", "8"]
    stage1 = train_pair(tmp_path / "stage1", [*common, "--stage", "1", "--model-config", SMALL_DENSENET,
                                              "--resize", "40", "--crop", "32", "--eval-resize", "40"])
    stage2 = train_pair(tmp_path / "stage2", [*common, "--stage", "2", "--crop", "32", "--eval-resize", "32"])
    stage3 = train_pair(tmp_path / "stage3", [*common, "--stage", "3", "--model-config",
                                              '{"classifier_blocks": [1, 1, 1, 1]}', "--crop", "128",
                                              "--eval-resize", "128", "--init-from", str(stage1[0]),
                                              "--init-from", str(stage2[0])])
    for pair in (stage1, stage2, stage3):
        judged(pair)
    sources = json.loads((stage3[1] / "manifest.json").read_text())["init_from"]
    assert [s["run"] for s in sources] == [str(stage1[0]), str(stage2[0])]
