"""Pitfalls of docs/pitfalls.md, proved both ways: the faithful twin passes, and each naive port
is caught at the layer where it goes wrong.  The pair is a user-style twin (tests/twins)."""

from __future__ import annotations

import dataclasses

import pytest

from parity.checks import ParityCase, check_gradients, check_layerwise, check_onnx

PITFALLS = ParityCase(
    name="pitfalls", model="pitfalls",
    factories={"torch": "tests.twins.torch_pitfalls:create", "tf": "tests.twins.keras_pitfalls:create"},
    config={"in_channels": 3, "num_classes": 6}, input_shape=(2, 3, 20, 28),
)


def test_faithful_twin_passes_every_check(twin_for, parity_report, workdir):
    twin = twin_for(PITFALLS)
    results = [check_layerwise(twin, "propagated"), check_layerwise(twin, "isolated"), check_gradients(twin),
               check_onnx(twin, str(workdir))]
    for result in results:
        parity_report.record(PITFALLS.name, result.check, result)
    assert all(result.passed for result in results), [f for result in results for f in result.failures()]


@pytest.mark.parametrize("naive, culprit", [
    ("conv_same", "conv1"),          # asymmetric 'same' padding at stride 2
    ("pool_zero_pad", "maxpool"),    # zero instead of -inf padding on signed input
    ("bn_defaults", "bn"),           # Keras BN epsilon 1e-3
])
def test_each_naive_port_is_caught_at_its_layer(twin_for, naive, culprit):
    case = dataclasses.replace(PITFALLS, name=f"pitfalls-{naive}", config={**PITFALLS.config, "naive": naive})
    result = check_layerwise(twin_for(case), "propagated")
    assert result.first_divergent == culprit
    order = [row.name for row in result.rows]
    assert all(row.passed for row in result.rows[: order.index(culprit)])


def test_bn_momentum_and_variance_convention_is_checked_by_the_train_step(twin_for):
    """Keras' default BN (momentum 0.99, biased variance) passes eval but fails the running stats."""
    case = dataclasses.replace(PITFALLS, name="pitfalls-bn_defaults", config={**PITFALLS.config, "naive": "bn_defaults"})
    result = check_gradients(twin_for(case))
    failing = {row.name for row in result.rows if not row.passed}
    assert {"state:bn.running_mean", "state:bn.running_var"} <= failing
