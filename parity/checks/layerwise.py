"""Every layer's output: propagated (each twin runs the whole network) or isolated (each
candidate layer is fed the reference's input to that layer, so only its own error shows)."""

from __future__ import annotations

from parity.protocol import layer_key
from parity.compare import LayerwiseResult, compare_named
from parity.pair import TwinPair
from parity.verdict import CheckResult, require

MODES = ("propagated", "isolated")


def judge_layers(check: str, comparison: LayerwiseResult, expected_layers: list[str]) -> CheckResult:
    """The layer-wise verdict: every compared layer within tolerance, and every layer compared."""
    bad = next((row for row in comparison.rows if not row.passed), None)
    return CheckResult(check, [
        require("every layer within tolerance", comparison.passed,
                f"first divergent layer {comparison.first_divergent}: {bad.reason if bad else ''}"),
        require("every compared layer ran in both twins", len(comparison.rows) == len(expected_layers),
                f"{len(comparison.rows)} of {len(expected_layers)} layers compared; did not run: "
                f"{sorted(set(expected_layers) - {row.name for row in comparison.rows})[:5]}"),
    ], comparison=comparison)


def check_layerwise(pair: TwinPair, mode: str = "propagated") -> CheckResult:
    if mode not in MODES:
        raise ValueError(f"layer-wise mode must be one of {MODES}, got {mode!r}")
    with pair.timed(f"layerwise_{mode}"):
        reference, order = pair.reference_run()
        if mode == "propagated":
            actual, _ = pair.other.forward(pair.other_model, pair.x, capture=pair.compared)
            tolerances = pair.case.tolerances
        else:
            order = [name for name in order if name in set(pair.compared)]
            actual, not_isolated = pair.other.forward_isolated(pair.other_model, reference, order)
            tolerances = pair.case.isolated_tolerances or pair.case.tolerances
        order = [name for name in order if name in set(pair.compared)]
        expected = pair.compared
        if mode == "isolated":  # judged in the propagated checks only (float64 included)
            order = [name for name in order if name not in not_isolated]
            expected = [name for name in expected if name not in not_isolated]
        comparison = compare_named(actual, reference, order, tolerances, key=layer_key, mode=mode)
        result = judge_layers(f"layerwise_{mode}", comparison, expected)
        if mode == "isolated":
            result.details["not_isolated"] = not_isolated
        return result


def check_weights_file(pair: TwinPair, path: str) -> CheckResult:
    """Load a canonical file into a fresh candidate and compare it layer-wise with the reference."""
    model = pair.build(pair.other)
    try:
        pair.other.load_weights(model, path)
        reference, order = pair.reference_run()
        actual, _ = pair.other.forward(model, pair.x, capture=pair.compared)
        order = [name for name in order if name in set(pair.compared)]
        comparison = compare_named(actual, reference, order, pair.case.tolerances, key=layer_key, mode="propagated")
        return judge_layers("weights_file", comparison, pair.compared)
    finally:
        pair.other.free(model)
