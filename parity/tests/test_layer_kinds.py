"""Every layer kind the built-in Keras mappings cover, against its stock torch counterpart, alone
in a model (tests/twins/*_layers.py): the weights cross both ways under the audit, and in
float64 every output, weight gradient and input gradient agrees to round-off.

Exactness of the transfer, stated per kind: every mapping is a permutation, a reshape, a split
or a concatenation (bit-exact both ways) except torch's two recurrent biases (LSTM, SimpleRNN,
and a GRU with reset_after=False), which Keras keeps as one: torch -> Keras -> torch keeps
their sum bit for bit (bias_ih + bias_hh, then (sum, 0)), Keras -> torch -> Keras is bit-exact.
A GRU with reset_after=True (Keras' default, torch's cell) keeps both biases: exact both ways.
"""

from __future__ import annotations

import pytest

from canon.inputs import InputSpec
from parity.worker import WorkerError
from parity.checks import check_contract, check_float64, check_layerwise, check_transfer
from parity.pair import ParityCase, TwinPair

FACTORIES = {"torch": "tests.twins.torch_layers:create", "tf": "tests.twins.keras_layers:create"}
IMAGE, SIGNAL, VOLUME = InputSpec((2, 4, 7, 9)), InputSpec((2, 4, 11), layout="signal"), \
    InputSpec((2, 3, 5, 6, 7), layout="volume")
SEQUENCE = InputSpec((2, 6, 5), layout="sequence")
INPUTS = {
    "conv1d": SIGNAL, "conv2d": IMAGE, "conv3d": VOLUME,
    "conv1d_transpose": SIGNAL, "conv2d_transpose": IMAGE, "conv3d_transpose": VOLUME,
    "depthwise1d": SIGNAL, "depthwise2d": IMAGE, "separable1d": SIGNAL, "separable2d": IMAGE,
    "dense_nd": InputSpec((2, 3, 4, 6), layout="plain"),
    "batchnorm1d": InputSpec((2, 4, 9), layout="signal"), "batchnorm2d": IMAGE, "batchnorm3d": VOLUME,
    "layernorm": InputSpec((2, 5, 6), layout="sequence"), "groupnorm": IMAGE,
    "rmsnorm": InputSpec((2, 5, 6), layout="sequence"),
    "embedding": InputSpec((2, 7), dtype="int64", layout="sequence", value_range=(0, 11)),
    "attention": InputSpec((2, 5, 8), layout="sequence"),
    "lstm": SEQUENCE, "gru": SEQUENCE, "simple_rnn": SEQUENCE, "bidirectional": SEQUENCE,
    "prelu": IMAGE, "free_variables": InputSpec((2, 4, 6), layout="sequence"), "user_scale": IMAGE,
}
# stock Keras BatchNormalization accumulates the biased batch variance, torch the unbiased one
BATCH_NORMS = {"batchnorm1d", "batchnorm2d", "batchnorm3d"}
SUMMED_BIASES = {"lstm": 1, "simple_rnn": 1, "bidirectional": 2}


def case(kind: str) -> ParityCase:
    known = ("bn_running_variance_biased",) if kind in BATCH_NORMS else ()
    return ParityCase(f"layer-{kind}", kind, FACTORIES, inputs=(INPUTS[kind],), loss="mse", known_differences=known)


@pytest.fixture
def pair_of(runners):
    built = []

    def make(kind: str) -> TwinPair:
        built.append(TwinPair(case(kind), runners.all()))
        return built[-1]

    yield make
    for pair in built:
        pair.close()


@pytest.mark.parametrize("kind", sorted(INPUTS))
def test_layer_kind_agrees_in_float64_and_crosses_both_ways(pair_of, kind):
    pair = pair_of(kind)
    assert pair.compared == ["layer"]  # the one layer is compared at its own output (attention, RNNs too)
    contract, transfer = check_contract(pair), check_transfer(pair)
    forward, gradients = check_float64(pair)
    isolated = check_layerwise(pair, "isolated")
    for result in (contract, transfer, forward, gradients, isolated):
        assert result.passed, result.failures()
    assert max(row.max_abs for row in forward.rows) < 1e-13
    assert len(gradients.rows) >= len(pair.ref_model.weights)  # every weight's gradient (or state) compared
    assert any(row.name.startswith("grad:input") for row in gradients.rows) == (kind != "embedding")


@pytest.mark.parametrize("kind", sorted(SUMMED_BIASES))
def test_summed_recurrent_biases_keep_their_sum_from_torch_and_every_bit_from_keras(pair_of, kind):
    trips = check_transfer(pair_of(kind)).details["round_trips"]
    assert len(trips[0]["lossy"]) == SUMMED_BIASES[kind]
    assert all("bias_ih" in group[0] and "bias_hh" in group[1] for group in trips[0]["lossy"])
    assert trips[1]["bit_exact_there"] and trips[1]["bit_exact_back"]


def test_gru_with_reset_after_keeps_both_biases_exactly(pair_of):
    assert check_transfer(pair_of("gru")).details["round_trips"][0]["lossy"] == []


def test_tuple_outputs_are_compared_element_by_element(runners):
    pair = TwinPair(ParityCase("layer-two_outputs", "two_outputs", FACTORIES, inputs=(IMAGE,), loss="mse"), runners.all())
    try:
        forward, gradients = check_float64(pair)
        assert forward.passed and gradients.passed, forward.failures() + gradients.failures()
        outputs = {row.name: row.shape for row in forward.rows if row.name.startswith("output:")}
        assert outputs == {"output:0": (2, 3, 7, 9), "output:1": (2, 7, 9)}
    finally:
        pair.close()


def test_a_layer_whose_layout_cannot_be_told_is_an_error_naming_it_and_the_way_out(runners):
    pair = TwinPair(ParityCase("layer-undeclared", "undeclared_layout", FACTORIES, inputs=(IMAGE,), loss="mse"),
                    runners.all())
    try:
        with pytest.raises(WorkerError, match=r"Keras layer 'layer' \(FirstChannels\).*register_keras_layer.*canonical_layout"):
            check_layerwise(pair, "propagated")
    finally:
        pair.close()
