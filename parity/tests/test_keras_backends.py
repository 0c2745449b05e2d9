"""The zoo's Keras twins on the Keras backend rows (Keras 3 on JAX and on torch) against torch.

One pair per case over the reference and the backend rows (torch, keras-jax, keras-torch), built
once, with the reference's weights in each; every backend row is
judged against torch by the checks themselves (contract, transfer, layer-wise propagated and
isolated, float64 layers and gradients, the float32 train step, and ONNX where the backend exports
one), each a report row ``case@keras-jax`` / ``case@keras-torch``.  The tf row of the same pair is
judged in ``test_zoo_parity.py``, not again here.

Tiers: ``FAST`` runs in ``make test``; every other zoo case that is not ``full_size`` is marked
``backend_rows`` and runs in ``make test-backends``, not in CI (over an hour on two cores,
which CI's 90 would not hold beside the slow tier).  Each case's tests stay on one pytest-xdist
worker (its ``xdist_group``), so that the two workers build different cases.  The full-size
cases (paper-size timm and MedMNIST+ models) get no backend rows: their tf row already takes
``make test-full-size`` one at a time, and Keras on JAX runs eagerly.
ONNX: keras-torch exports through Keras' own exporter (torch.onnx underneath); keras-jax exports
none (it would need jax2onnx, which twinframe does not install), so it has no ONNX check.
"""

from __future__ import annotations

import pytest

from parity import frameworks, zoo
from parity.checks import (check_contract, check_float64, check_gradients, check_layerwise, check_onnx,
                           check_transfer, row_name)

FAST = ("aecnn_autoencoder", "resnet18", "vit_small")  # in `make test`: an autoencoder, a ResNet, a ViT
BACKENDS = frameworks.backends()
EXPORTS_ONNX = tuple(b for b in BACKENDS if frameworks.get(b).onnx_unavailable is None)  # keras-torch


def _marks(name: str) -> list:
    return [] if name in FAST else [pytest.mark.backend_rows, pytest.mark.xdist_group(name)]


CASES = [pytest.param(name, marks=_marks(name)) for name, case in sorted(zoo.CASES.items()) if not case.full_size]


@pytest.fixture(scope="module", params=CASES)
def pair(request, twin_for_backends):
    yield twin_for_backends(request.param)
    twin_for_backends.release(request.param)  # one case's models at a time


def judged(result, parity_report, view):
    """Record a check's result (or results) under the view's row and assert its verdict."""
    results = result if isinstance(result, tuple) else (result,)
    for each in results:
        parity_report.record(row_name(view), each.check, each)
    assert all(each.passed for each in results), "\n".join(f for each in results for f in each.failures())
    return result


# each check as the tf row's suite names it: what it proves, and how it is called on one view
CHECKS = {
    "contract_names_shapes_and_parameter_counts_agree": check_contract,
    "transfer_round_trips_are_bit_exact": check_transfer,
    "layerwise_propagated_outputs_agree": lambda view: check_layerwise(view, "propagated"),
    "layerwise_isolated_outputs_agree": lambda view: check_layerwise(view, "isolated"),
    "float64_layers_and_gradients_agree_to_float64_precision": check_float64,
    "gradients_and_train_step_state_agree": check_gradients,
}


@pytest.mark.parametrize("check", CHECKS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_the_backend_row_passes(pair, backend, check, parity_report):
    """The same proofs as the tf row's, the float64 one at float64 tolerance."""
    view = pair.versus(backend)
    judged(CHECKS[check](view), parity_report, view)


@pytest.mark.parametrize("backend", EXPORTS_ONNX)
def test_onnx_four_way_agreement(pair, backend, parity_report, workdir):
    view = pair.versus(backend)
    judged(check_onnx(view, str(workdir)), parity_report, view)
