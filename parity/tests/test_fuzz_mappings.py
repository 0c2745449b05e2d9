"""Property-based fuzzing of every Keras layer mapping (parity.fuzz): for each kind of the
registry, hypothesis draws configurations with a fixed seed; both twins are built from each,
the torch weights cross through the mapping, and in float64 the output, every weight gradient,
the input gradient and the state agree within 1e-10.  A failure shrinks to a minimal
configuration, which the assertion shows.  ``make fuzz`` runs ten times as many, and shows
every known difference (docs/pitfalls.md) with its minimal example."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from parity import frameworks
from parity.fuzz import run, space

# examples per kind in `make test`: at least 200 in all over the kinds float64 can run (not the
# 3-D pools: TensorFlow has no float64 kernel for them); `make fuzz` runs ten times as many
EXAMPLES_PER_KIND = 4
WHOLLY_SET_ASIDE = {"MaxPooling3D": "tf_pool3d_float64", "AveragePooling3D": "tf_pool3d_float64"}


def test_the_bounded_fuzz_draws_at_least_200_configurations():
    assert EXAMPLES_PER_KIND * (len(space.KINDS) - len(WHOLLY_SET_ASIDE)) >= 200


@pytest.mark.parametrize("kind", space.KINDS)
def test_every_fuzzed_configuration_agrees_in_float64(runners, kind):
    result = run.probe_kind(kind, EXAMPLES_PER_KIND, runners.all())
    assert result.ok, json.dumps(result.failure.to_dict(), indent=1)
    if kind in WHOLLY_SET_ASIDE:  # every configuration set aside, by that known difference's name
        assert result.examples == 0 and result.excluded[WHOLLY_SET_ASIDE[kind]] > 0
    else:
        assert result.examples == EXAMPLES_PER_KIND and result.passed == result.examples
        assert result.worst < run.FUZZ_TOLERANCE.atol


def test_every_registered_mapping_has_a_strategy():
    """The registry (read in a Keras-only process) and the fuzzed kinds are the same classes."""
    code = ("import json, parity.adapters.keras_mappings as m, parity.mappings as r; "
            "print(json.dumps(sorted(c.__name__ for c in r.registered_keras_layers())))")
    env = {**os.environ, **frameworks.process_environment("tf")}
    registered = json.loads(subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True,
                                           text=True).stdout.strip().splitlines()[-1])
    assert sorted(space.KINDS) == registered


def test_a_known_difference_still_shows_and_shrinks_to_a_small_example(runners):
    shown = run.probe_known_difference(next(d for d in space.KNOWN_DIFFERENCES if d.key == "pool_ceil_mode"),
                                       EXAMPLES_PER_KIND * 3, runners.all())
    assert shown.minimal is not None and not shown.minimal.passed
    assert shown.minimal.case.config["ceil_mode"] and max(shown.minimal.case.inputs[0].shape[2:]) <= 4


def test_without_its_known_difference_the_fuzzer_fails_and_shrinks_to_it(runners, monkeypatch):
    """Set aside nothing for torch's ceil_mode, and max-pooling must fail, shrunk to a small
    ceil_mode configuration: the exclusions are what keeps the fuzz green, each by name."""
    monkeypatch.setattr(space, "KNOWN_DIFFERENCES",
                        tuple(d for d in space.KNOWN_DIFFERENCES if d.key != "pool_ceil_mode"))
    drawn = space.FAMILIES["MaxPooling1D"]  # and draw only ceil_mode=True, where the difference lies
    monkeypatch.setitem(space.FAMILIES, "MaxPooling1D", lambda kind: drawn(kind).filter(lambda c: c.config["ceil_mode"]))
    result = run.probe_kind("MaxPooling1D", 30, runners.all())
    assert not result.ok
    minimal = result.failure.case
    assert minimal.config["ceil_mode"] and minimal.inputs[0].shape[2] <= 4
