import json

from parity.compare import compare_named
from parity.report import ParityReport, format_table, read_cases, summarize
from canon.tolerances import ToleranceSet
import numpy as np


def entry():
    layers = compare_named({"a": np.ones(2), "b": np.ones(2) * 1.5}, {"a": np.ones(2), "b": np.ones(2)},
                           ["a", "b"], ToleranceSet(), mode="propagated")
    return layers


def test_report_merges_by_case_and_summarizes(tmp_path):
    path = tmp_path / "reports" / "parity.json"
    first = ParityReport(path)
    first.record("m1", "layerwise_propagated", entry())
    first.write()
    second = ParityReport(path)
    second.record("m2", "durations", {"build": 1.0, "onnx": 2.5})
    second.write()
    document = json.loads(path.read_text())
    assert set(document["models"]) == {"m1", "m2"}
    rows = {row["case"]: row for row in document["summary"]}
    assert rows["m1"]["propagated_first_divergent"] == "b" and rows["m1"]["propagated_passed"] is False
    assert rows["m2"]["seconds"] == 3.5
    table = format_table(document["summary"])
    assert "first divergent" in table and "m1" in table and " b " in table


def test_a_case_checked_in_two_runs_keeps_the_checks_of_both(tmp_path):
    """`make test` and then `make test-slow` check different parts of one case."""
    path = tmp_path / "parity.json"
    fast = ParityReport(path)
    fast.record("m", "layerwise_propagated", entry())
    fast.record("m", "durations", {"build": 1.0})
    fast.write()
    slow = ParityReport(path)
    slow.record("m", "onnx", {"passed": True})
    slow.record("m", "durations", {"onnx": 2.0})
    slow.write()
    merged = json.loads(path.read_text())["models"]["m"]
    assert {"layerwise_propagated", "onnx"} <= set(merged)
    assert merged["durations"] == {"build": 1.0, "onnx": 2.0}


def test_a_damaged_report_is_replaced_not_merged(tmp_path):
    path = tmp_path / "parity.json"
    path.write_text("{ half written")
    report = ParityReport(path)
    report.record("m", "durations", {"x": 1.0})
    report.write()
    assert list(json.loads(path.read_text())["models"]) == ["m"]


def test_summary_of_an_empty_entry_is_just_the_name():
    assert summarize("m", {}) == {"case": "m"}


def test_a_long_session_writes_now_and_then_not_after_every_case(tmp_path):
    report = ParityReport(tmp_path / "parity.json")
    report.record("resnet18", "contract", {"passed": True})
    report.write_now_and_then(every_s=3600)
    assert not report.path.exists()  # the session's end writes it
    report.write_now_and_then(every_s=0)
    assert read_cases(report.path)["resnet18"]["contract"] == {"passed": True}
