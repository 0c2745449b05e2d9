"""A named cause for each mismatch: known porting bugs planted one at a time in real Keras twins
(tests/twins/keras_planted.py), each caught in float64 at the right layer with the right
probable cause and its fix; the correct ports of the same layers are never blamed; a difference
outside the catalogue is caught with no cause made up for it."""

from __future__ import annotations

import pytest

from canon.inputs import InputSpec
from parity.checks import check_float64
from parity.pair import ParityCase, TwinPair

FACTORIES = {"torch": "tests.twins.torch_planted:create", "tf": "tests.twins.keras_planted:create"}
IMAGE = InputSpec((2, 3, 8, 10))
SEQUENCE = InputSpec((2, 6, 5), layout="sequence")
# planted bug -> (the input, the layer it is in, whether it shows in the running statistics)
PLANTED = {
    "norm_epsilon": (IMAGE, "1", False),
    "bn_momentum_convention": (IMAGE, "1", True),
    "bn_running_variance_biased": (IMAGE, "1", True),
    "gelu_approximation": (InputSpec((2, 5, 6), layout="sequence"), "1", False),
    "same_padding_asymmetry": (IMAGE, "0", False),
    "maxpool_padding_value": (IMAGE, "1", False),
    "avgpool_count_include_pad": (IMAGE, "1", False),
    "flatten_order": (InputSpec((2, 3, 4, 6)), "1", False),
    "dense_kernel_transposed": (InputSpec((3, 6), layout="plain"), "0", False),
    "softmax_axis": (IMAGE, "1", False),
    "leaky_relu_slope": (IMAGE, "1", False),
    "gru_reset_after": (SEQUENCE, "rnn", False),
    "gru_gate_order": (SEQUENCE, "rnn", False),
    "lstm_bias": (SEQUENCE, "rnn", False),
    "resize_mode": (IMAGE, "1", False),
}
NO_FAITHFUL_TWIN = {"resize_mode"}  # Keras has no bilinear upsampling with align_corners=True
BATCH_NORMS = {"norm_epsilon", "bn_momentum_convention", "bn_running_variance_biased"}


def float64_results(runners, name: str, faithful: bool = False, known: tuple[str, ...] = ()):
    spec = PLANTED[name][0] if name in PLANTED else IMAGE
    case = ParityCase(f"planted-{name}{'-faithful' if faithful else ''}", name, FACTORIES,
                      config={"faithful": True} if faithful else {}, inputs=(spec,), loss="mse",
                      known_differences=known)
    pair = TwinPair(case, runners.all())
    try:
        return check_float64(pair)
    finally:
        pair.close()


@pytest.mark.parametrize("name", sorted(PLANTED))
def test_a_planted_bug_is_named_at_its_layer(runners, name):
    _, layer, in_statistics = PLANTED[name]
    forward, gradients = float64_results(runners, name)
    result = gradients if in_statistics else forward
    assert not result.passed
    if not in_statistics:
        assert forward.first_divergent == layer
    named = result.details["probable_causes"]
    assert [(c["layer"], c["key"]) for c in named][:1] == [(layer, name)], named
    assert named[0]["text"].startswith("probable cause:") and "fix:" in named[0]["text"]
    # float64 round-off; TF's bilinear resize is float32 inside even in a float64 model
    assert named[0]["agreement"] <= (1e-6 if name == "resize_mode" else 1e-10)
    assert named[0]["text"] in " ".join(result.failures())  # the failure says it, not only the report


@pytest.mark.parametrize("name", sorted(set(PLANTED) - NO_FAITHFUL_TWIN))
def test_the_correct_port_is_not_blamed(runners, name):
    known = ("bn_running_variance_biased",) if name in BATCH_NORMS else ()
    forward, gradients = float64_results(runners, name, faithful=True, known=known)
    assert forward.passed and gradients.passed, forward.failures() + gradients.failures()
    assert forward.details["probable_causes"] == []
    assert all(c.get("accepted") for c in gradients.details["probable_causes"])


def test_stock_batchnorm_statistics_are_accepted_only_when_declared(runners):
    forward, gradients = float64_results(runners, "bn_running_variance_biased", faithful=True)
    assert forward.passed and not gradients.passed
    assert gradients.details["probable_causes"][0]["key"] == "bn_running_variance_biased"
    forward, gradients = float64_results(runners, "bn_running_variance_biased", faithful=True,
                                         known=("bn_running_variance_biased",))
    assert gradients.passed
    accepted = [row for row in gradients.rows if "known difference" in (row.reason or "")]
    assert [row.name for row in accepted] == ["state:1.running_var"]


def test_a_difference_outside_the_catalogue_is_caught_without_a_made_up_cause(runners):
    forward, _ = float64_results(runners, "uncatalogued")
    assert not forward.passed and forward.first_divergent == "1"
    assert forward.details["probable_causes"] == []
