"""The typed check result: one verdict, saved and read back unchanged."""

import json

from parity.compare import LayerwiseResult, TensorComparison
from parity.verdict import CheckResult, Criterion, require


def _row(name: str, passed: bool) -> TensorComparison:
    return TensorComparison(name, passed, (2, 3), {"rtol": 1e-5, "atol": 1e-6, "mode": "max"}, 0.5, (1, 2), 0.1,
                            reason="" if passed else "3 element(s) outside tolerance (max)")


def test_passes_only_when_every_criterion_holds():
    ok = CheckResult("contract", [require("a", True), require("b", True, "ignored when it holds")])
    assert ok.passed and ok.failures() == [] and ok.criteria[1].detail == ""
    bad = CheckResult("contract", [require("a", True), require("b", False, "parameters: {1, 2}")])
    assert not bad.passed and bad.failures() == ["contract: b: parameters: {1, 2}"]
    assert not CheckResult("contract").passed  # nothing evaluated is not a pass
    assert CheckResult("contract").failures() == ["contract: no criterion was evaluated"]


def test_an_exception_is_a_failed_result_that_keeps_the_error():
    result = CheckResult.from_exception("onnx", NotADirectoryError(20, "Not a directory", "/x/a.onnx"))
    assert not result.passed
    assert result.failures() == ["onnx: stopped by NotADirectoryError: [Errno 20] Not a directory: '/x/a.onnx'"]


def test_to_dict_and_from_dict_round_trip_through_json():
    comparison = LayerwiseResult("propagated", [_row("conv1", True), _row("fc", False)])
    result = CheckResult("layerwise_propagated", [Criterion("every layer within tolerance", False, "fc")],
                         {"note": 1}, comparison)
    data = json.loads(json.dumps(result.to_dict()))
    assert data["passed"] is False and data["first_divergent"] == "fc" and data["check"] == "layerwise_propagated"
    back = CheckResult.from_dict(data)
    assert back == result
    assert back.first_divergent == "fc" and back.rows[1].max_abs_index == (1, 2)
