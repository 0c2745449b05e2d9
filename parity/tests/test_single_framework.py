"""What one framework must do alone: reproducible builds, repeatable passes, lossless canonical I/O."""

from __future__ import annotations

import numpy as np
import pytest

from parity import zoo
from parity.compare import bitwise_equal
from canon.inputs import parity_input
from canon.weights import load_canonical

CASE = zoo.get_case("resnet18")


@pytest.fixture(params=[pytest.param("torch", marks=pytest.mark.torch), pytest.param("tf", marks=pytest.mark.tf)])
def runner(request):
    return request.getfixturevalue(f"{request.param}_runner")


def test_same_seed_builds_identical_weights_and_other_seeds_do_not(runner):
    build = lambda seed: runner.build(CASE.factories[runner.framework], CASE.model, CASE.config, seed=seed)
    models = [build(7), build(7), build(8)]
    try:
        digests = [runner.save_weights(m)[1] for m in models]
    finally:
        for m in models:
            runner.free(m)
    assert digests[0] == digests[1] != digests[2]


def test_canonical_save_load_save_is_bit_exact_and_forward_repeats(runner):
    factory = CASE.factories[runner.framework]
    source, target = (runner.build(factory, CASE.model, CASE.config, seed=s) for s in (1, 2))
    try:
        path, digest = runner.save_weights(source)
        audit = runner.load_weights(target, path)
        assert runner.save_weights(target)[1] == digest
        assert audit["tensors"] == len(load_canonical(path)) == len(source.weights)
        x = parity_input(CASE.input_shape, seed=3)
        first, second = runner.forward(target, x)[0], runner.forward(source, x)[0]
        assert first["output:0"].shape == (CASE.input_shape[0], CASE.config["num_classes"])
        assert np.isfinite(first["output:0"]).all()
        assert bitwise_equal(first["output:0"], second["output:0"])
    finally:
        runner.free(source)
        runner.free(target)


def test_environment_records_versions_threads_and_flags(runner):
    env = runner.environment
    assert env["threads"]["intra_op"] >= 1 and env["threads"]["inter_op"] >= 1
    assert env["versions"]["python"] and env["device"] == "cpu"
    assert not any(value is True for key, value in env["flags"].items() if key.startswith("tf32"))
