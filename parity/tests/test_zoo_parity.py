"""The whole parity pipeline on every zoo case: one test per check, one row per case in the report."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from parity import zoo
from spec.weights import load_canonical

# The acceptance bound on logits for every pair of the four, as a norm-wise relative error
# max|a - r| / max|r|.  The element-wise relative error is reported too, but on logits near
# zero it measures float32 noise: torch against its own ONNX export exceeds 1e-5 on MeDiANet.
LOGITS_MAX_REL = 1e-5


@pytest.fixture(scope="module", params=[
    pytest.param(name, marks=pytest.mark.slow) if case.slow else name for name, case in sorted(zoo.CASES.items())])
def twin(request, twin_for):
    yield twin_for(request.param)
    twin_for.release(request.param)  # one case's models at a time: VGG's alone take gigabytes


@pytest.mark.parametrize("name", sorted(name for name, case in zoo.CASES.items() if case.slow))
def test_slow_cases_contract_and_layers_in_every_suite(twin_for, parity_report, name):
    """What the fast suite still checks of a slow case: the contract and every layer's output."""
    twin = twin_for(name)
    contract = twin.contract()
    assert contract["weights_only_in"] == {"torch": [], "tf": []} and contract["shape_mismatches"] == {}
    assert contract["layers_only_in"] == {"torch": [], "tf": []}
    for mode in ("propagated", "isolated"):
        result = twin.check_layerwise(mode)
        parity_report.record(name, f"layerwise_{mode}", result)
        assert result.passed, f"first divergent layer ({mode}): {result.first_divergent}"
    twin_for.release(name)


def test_contract_names_shapes_and_parameter_counts_agree(twin, parity_report):
    contract = twin.contract()
    parity_report.record(twin.case.name, "contract", contract)
    assert contract["weights_only_in"] == {"torch": [], "tf": []}
    assert contract["shape_mismatches"] == {}
    assert contract["parameters"]["torch"] == contract["parameters"]["tf"]
    assert contract["layers_only_in"] == {"torch": [], "tf": []}
    assert twin.audit["parameters"] == twin.audit["source_parameters"]


def test_fresh_weights_are_not_shared_between_layers(twin):
    """A shared, pre-seeded initializer gives same-shaped layers identical weights."""
    for framework, path in twin.initial_paths.items():
        tensors = load_canonical(path)
        random = {n: t for n, t in tensors.items() if t.size > 1 and np.unique(t).size > 1}
        assert random, f"{framework}: no randomly initialised tensors"
        for (a, ta), (b, tb) in itertools.combinations(random.items(), 2):
            assert not (ta.shape == tb.shape and np.array_equal(ta, tb)), f"{framework}: {a} and {b} are identical"


def test_transfer_round_trips_are_bit_exact(twin, parity_report):
    transfer = twin.check_transfer()
    parity_report.record(twin.case.name, "transfer", transfer)
    for trip in transfer["round_trips"]:
        assert trip["bit_exact_there"] and trip["bit_exact_back"], trip["route"]
        assert all(audit["parameters"] == audit["source_parameters"] for audit in trip["audits"])


@pytest.mark.parametrize("mode", ["propagated", "isolated"])
def test_layerwise_outputs_agree(twin, parity_report, mode):
    result = twin.check_layerwise(mode)
    parity_report.record(twin.case.name, f"layerwise_{mode}", result)
    assert len(result.rows) == len(twin.ref_model.layers)
    bad = [row for row in result.rows if not row.passed]
    assert result.passed, f"first divergent layer ({mode}): {result.first_divergent}: {bad[0]}"


def test_float64_twins_agree_to_float64_precision(twin, parity_report):
    """The semantic proof: in float64 with the same weights, every layer and every gradient agree
    at float64 tolerance (rtol 1e-7, atol 1e-7), so what float32 shows beyond that is round-off."""
    forward, backward = twin.check_float64()
    parity_report.record(twin.case.name, "layerwise_float64", forward)
    parity_report.record(twin.case.name, "gradients_float64", backward)
    for result in (forward, backward):
        bad = [row for row in result.rows if not row.passed]
        assert result.passed, f"first divergent ({result.mode}): {result.first_divergent}: {bad[0]}"
    outputs = [row for row in forward.rows if row.name.startswith("output:")]
    assert outputs and all(row.scale_rel < 1e-12 for row in outputs)
    names = {row.name for row in backward.rows}
    assert {f"grad:{n}" for n in twin.ref_model.weights if not n.endswith(("running_mean", "running_var"))} <= names


def test_gradients_and_train_step_state_agree(twin, parity_report, request):
    if "gradients" in twin.case.known_failures:
        request.applymarker(pytest.mark.xfail(strict=True, reason=twin.case.known_failures["gradients"]))
    result, losses = twin.check_gradients()
    parity_report.record(twin.case.name, "gradients", result)
    parity_report.record(twin.case.name, "losses", losses)
    names = {row.name for row in result.rows}
    assert {f"grad:{n}" for n in twin.ref_model.weights if not n.endswith(("running_mean", "running_var"))} <= names
    bad = [row for row in result.rows if not row.passed]
    assert result.passed, f"first divergent gradient/state: {result.first_divergent}: {bad[0]}"
    if twin.case.name == "unet":
        # UNet-BN's float32 gradient of decoder.7.double_conv.0 sits at a kink: a ReLU input within
        # round-off of zero.  Where float32 lands on the other side than the reference (as on the
        # earlier development machine), the gap must be explained by the kink (the float64 gradient
        # itself jumps by as much when the input moves by round-off); where it lands on the same side
        # (as on an AMD EPYC), the plain tolerance holds.  Any other explanation fails.
        row = next(row for row in result.rows if row.name == "grad:decoder.7.double_conv.0.weight")
        assert not row.reason or "discontinuous at this input" in row.reason, row.reason


def test_onnx_four_way_agreement(twin, parity_report, workdir):
    result = twin.check_onnx(str(workdir))
    parity_report.record(twin.case.name, "onnx", result)
    sides = {"torch", "tf", "torch-onnx", "tf-onnx"}
    assert {frozenset((row["a"], row["b"])) for row in result["matrix"]} == {
        frozenset(p) for p in itertools.combinations(sides, 2)}
    assert result["exports"]["torch"]["exporter"] and result["exports"]["tf"]["exporter"]
    assert result["exports"]["torch"]["opset"] == result["exports"]["tf"]["opset"] == twin.case.opset
    for row in result["matrix"]:
        assert row["passed"], f"{row['a']} vs {row['b']}: {row['reason']}"
        assert row["scale_rel"] <= LOGITS_MAX_REL, f"{row['a']} vs {row['b']}: relative error {row['scale_rel']:.2e}"


def test_determinism_same_seed_and_repeat_forward(twin, parity_report):
    result = twin.check_determinism()
    parity_report.record(twin.case.name, "determinism", result)
    for framework, checks in result.items():
        assert checks["same_seed_same_weights"], f"{framework}: same seed built different weights"
        assert checks["repeat_forward_bitwise"], f"{framework}: two forward passes differ"
        assert checks["threads"]["intra_op"] >= 1
    assert result["torch"]["flags"]["tf32_matmul"] is False and result["tf"]["flags"]["tf32"] is False
