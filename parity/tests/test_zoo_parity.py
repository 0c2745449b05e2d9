"""The parity pipeline on every zoo case: one test per check, one row per case in the report.

Each test asserts the check's own verdict (``result.passed``, its failures as the message): what
PASS means is written once, in the check, for pytest and ``python -m parity check`` alike."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from parity import zoo
from parity.checks import (check_contract, check_determinism, check_float64, check_gradients, check_layerwise,
                           check_onnx, check_transfer)
from canon.weights import load_canonical


def _marks(case) -> list:
    return [pytest.mark.full_size] if case.full_size else [pytest.mark.slow] if case.slow else []


@pytest.fixture(scope="module", params=[pytest.param(name, marks=_marks(case)) for name, case in sorted(zoo.CASES.items())])
def twin(request, twin_for):
    yield twin_for(request.param)
    twin_for.release(request.param)  # one case's models at a time: VGG's alone take gigabytes


def judged(result, parity_report, twin):
    """Record a check's result (or results) in the report and assert its verdict."""
    results = result if isinstance(result, tuple) else (result,)
    for each in results:
        parity_report.record(twin.case.name, each.check, each)
    assert all(each.passed for each in results), "\n".join(f for each in results for f in each.failures())
    return result


@pytest.mark.parametrize("name", sorted(name for name, case in zoo.CASES.items() if case.slow and not case.full_size
                                         and name not in zoo.LAYERS_IN_SLOW_SUITE_ONLY))
def test_slow_cases_contract_and_layers_in_every_suite(twin_for, parity_report, name):
    """What the fast suite still checks of a slow case: the contract and every layer's output."""
    twin = twin_for(name)
    judged(check_contract(twin), parity_report, twin)
    for mode in ("propagated", "isolated"):
        judged(check_layerwise(twin, mode), parity_report, twin)
    twin_for.release(name)


def test_contract_names_shapes_and_parameter_counts_agree(twin, parity_report):
    judged(check_contract(twin), parity_report, twin)


def test_fresh_weights_are_not_shared_between_layers(twin):
    """A shared, pre-seeded initializer gives same-shaped layers identical weights."""
    for framework, path in twin.initial_paths.items():
        tensors = load_canonical(path)
        random = {n: t for n, t in tensors.items() if t.size > 1 and np.unique(t).size > 1}
        assert random, f"{framework}: no randomly initialised tensors"
        for (a, ta), (b, tb) in itertools.combinations(random.items(), 2):
            assert not (ta.shape == tb.shape and np.array_equal(ta, tb)), f"{framework}: {a} and {b} are identical"


def test_transfer_round_trips_are_bit_exact(twin, parity_report):
    judged(check_transfer(twin), parity_report, twin)


@pytest.mark.parametrize("mode", ["propagated", "isolated"])
def test_layerwise_outputs_agree(twin, parity_report, mode):
    judged(check_layerwise(twin, mode), parity_report, twin)


def test_float64_twins_agree_to_float64_precision(twin, parity_report):
    """The semantic proof: in float64 with the same weights, every layer and every gradient agree
    at float64 tolerance (rtol 1e-7, atol 1e-7), so what float32 shows beyond that is round-off."""
    judged(check_float64(twin), parity_report, twin)


@pytest.mark.pipeline
def test_gradients_and_train_step_state_agree(twin, parity_report, request):
    if "gradients" in twin.case.known_failures:
        request.applymarker(pytest.mark.xfail(strict=True, reason=twin.case.known_failures["gradients"]))
    result = judged(check_gradients(twin), parity_report, twin)
    if twin.case.name == "unet":
        # UNet-BN's float32 gradient of decoder.7.double_conv.0 sits at a kink: a ReLU input within
        # round-off of zero.  Where float32 lands on the other side than the reference (as on the
        # earlier development machine), the gap must be explained by the kink (the float64 gradient
        # itself jumps by as much when the input moves by round-off); where it lands on the same side
        # (as on an AMD EPYC), the plain tolerance holds.  Any other explanation fails.
        row = next(row for row in result.rows if row.name == "grad:decoder.7.double_conv.0.weight")
        assert not row.reason or "discontinuous at this input" in row.reason, row.reason


@pytest.mark.pipeline
def test_onnx_four_way_agreement(twin, parity_report, workdir):
    judged(check_onnx(twin, str(workdir)), parity_report, twin)


@pytest.mark.pipeline
def test_determinism_same_seed_and_repeat_forward(twin, parity_report):
    judged(check_determinism(twin), parity_report, twin)
