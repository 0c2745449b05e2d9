"""The zoo's Keras twins on the Keras backend rows (Keras 3 on JAX and on torch) against torch.

One pair per case over the reference and the backend rows (torch, keras-jax, keras-torch), built
once, with the reference's weights in each; every backend row is
judged against torch by the checks themselves (contract, transfer, layer-wise propagated and
isolated, float64 layers and gradients, the float32 train step, and ONNX where the backend exports
one), each a report row ``case@keras-jax`` / ``case@keras-torch``.  The tf row of the same pair is
judged in ``test_zoo_parity.py``, not again here.

Tiers: ``FAST`` runs in ``make test``; every other zoo case is marked ``backend_rows`` and runs
in ``make test-backends``, not in CI (hours on two cores: its first 37 tests took 23 minutes;
Keras on JAX runs eagerly and compiles each op for each new shape).  Each case's tests stay on
one pytest-xdist worker (its ``xdist_group``), so that the two workers build different cases.  The paper-size cases are marked ``full_size`` as
well: ``make test-backends`` runs them after the rest, one at a time, as ``make test-full-size``
runs their tf rows (``make test-slow`` leaves their backend rows out).
ONNX: keras-torch exports through Keras' own exporter (torch.onnx underneath); keras-jax exports
none (it would need jax2onnx, which twinframe does not install), so it has no ONNX check.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from parity import frameworks, zoo
from parity.checks import (check_contract, check_float64, check_gradients, check_layerwise, check_onnx,
                           check_transfer, row_name)

ROOT = Path(__file__).resolve().parents[2]
FAST = ("aecnn_autoencoder", "vit_small")  # in `make test`: an autoencoder (ONNX on keras-torch), a ViT
BACKENDS = frameworks.backends()
EXPORTS_ONNX = tuple(b for b in BACKENDS if frameworks.get(b).onnx_unavailable is None)  # keras-torch


def _marks(name: str, case) -> list:
    if name in FAST:
        return []
    return [pytest.mark.backend_rows, pytest.mark.xdist_group(name)] + ([pytest.mark.full_size] if case.full_size else [])


CASES = [pytest.param(name, marks=_marks(name, case)) for name, case in sorted(zoo.CASES.items())]


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


MOMENTS_PROBE = """
import json, sys
import numpy as np
from parity import frameworks
adapter = frameworks.get("keras-torch").load_adapter()  # keeps TensorFlow out of this process
adapter.setup()
import keras
from keras.src.backend.torch import nn
x64 = 1000.0 + 0.01 * np.random.default_rng(0).standard_normal((2, 4, 4, 8))  # a large mean, a small spread
x = x64.astype("float32")
true = x.astype("float64").var(axis=(0, 1, 2))
def error(moments):
    return float(np.abs(keras.ops.convert_to_numpy(moments(keras.ops.convert_to_tensor(x), (0, 1, 2))[1]) - true).max()
                 / true.max())
print(json.dumps({"two_pass": error(keras.ops.moments), "one_pass": error(nn.moments._twinframe_one_pass),
                  "flag": adapter.environment()["flags"]["batch_moments"]}))
"""


def test_keras_on_torch_takes_batch_statistics_in_two_passes():
    """Keras' torch backend computes a batch variance as E[x^2] - E[x]^2, which float32 cancels
    where the mean is large against the spread; the keras-torch worker computes it in two passes
    (docs/pitfalls.md, entry 46), and its environment says so."""
    probe = subprocess.run([sys.executable, "-c", MOMENTS_PROBE], capture_output=True, text=True, cwd=ROOT, check=True,
                           env={**os.environ, **frameworks.environment("keras-torch")})
    seen = json.loads(probe.stdout.strip().splitlines()[-1])
    assert seen["one_pass"] > 1.0  # Keras' own: 1.4e3 times the variance off
    assert seen["two_pass"] < 1e-6  # measured 2.8e-8
    assert seen["flag"].startswith("two-pass")
