"""MeDiANet beyond the zoo cases: the paper's ablations, the summary commands, input-size errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from parity import zoo
from parity.checks import ParityCase, check_contract, check_float64, check_layerwise
from parity.worker import WorkerError
from canon.inputs import parity_input

ROOT = Path(__file__).resolve().parents[2]
SMALL = dict(head="global", num_classes=7)


@pytest.mark.slow  # 72 s in a fresh `make test`; the paper's network itself is a zoo case there
@pytest.mark.parametrize("ablation", [{"activation": "relu"}, {"mdires_placement": "trunk"},
                                      {"mdires_placement": "mask"}])
def test_ablations_are_twins(twin_for, ablation):
    tag = "-".join(f"{v}" for v in ablation.values())
    case = ParityCase(f"medianet_base69_{tag}", "medianet_base69", zoo.ZOO_FACTORIES, **zoo.MEDIANET_TOLERANCES,
                      config={**SMALL, **ablation}, input_shape=(2, 3, 64, 96))
    twin = twin_for(case)
    results = [check_contract(twin), *check_float64(twin), check_layerwise(twin, "isolated")]
    assert all(result.passed for result in results), [f for result in results for f in result.failures()]


def _summary(framework: str, *args: str) -> list[dict]:
    result = subprocess.run([sys.executable, "-m", f"impl_{framework}.summary", *args, "--json"], cwd=ROOT,
                            capture_output=True, text=True, env={"TF_CPP_MIN_LOG_LEVEL": "3", "PATH": ""})
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout)


def test_summary_commands_agree_between_frameworks():
    args = ("medianet_base69", "--config", json.dumps(SMALL))
    torch_summary, tf_summary = _summary("torch", *args), _summary("tf", *args)
    assert [s["trainable"] for s in torch_summary] == [s["trainable"] for s in tf_summary]
    assert [s["non_trainable"] for s in torch_summary] == [s["non_trainable"] for s in tf_summary]
    assert torch_summary[0]["blocks"] == tf_summary[0]["blocks"]
    assert torch_summary[0]["trainable"] == 314_555 - 35 * 32 - 35 + 7 * 32 + 7  # 7 classes instead of 35


def test_bad_input_size_is_named_by_the_torch_twin(torch_runner):
    model = torch_runner.build(zoo.ZOO_FACTORIES["torch"], "medianet_base69", SMALL)
    try:
        with pytest.raises(WorkerError, match="width 80: stage 1 map of 20 is not divisible"):
            torch_runner.forward(model, parity_input((2, 3, 64, 80)))
    finally:
        torch_runner.free(model)
