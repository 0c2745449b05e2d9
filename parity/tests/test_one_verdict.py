"""What PASS means is decided once, in the check: ``python -m parity check`` and the pytest
assertions read the same ``result.passed``.  The case below fails exactly one criterion, one that
the case declares a module uncompared that neither twin has (a typo), so every weight, every compared
tensor and both ONNX files agree."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

from parity.checks import check_contract
from parity.report import summarize
from parity.tests.test_pitfalls import PITFALLS
from parity.verdict import CHECK_NAMES, CheckResult

ROOT = Path(__file__).resolve().parents[2]
SPARE = dataclasses.replace(PITFALLS, name="pitfalls-typo", uncompared={"fc2": "a typo for fc"})
ONLY_FAILURE = "every module the case declares uncompared exists"


def test_the_command_and_pytest_fail_the_same_case_for_the_same_reason(twin_for, tmp_path):
    contract = check_contract(twin_for(SPARE))  # what the pytest test of the contract asserts
    assert not contract.passed
    assert [c.name for c in contract.criteria if not c.passed] == [ONLY_FAILURE]
    assert "['fc2']" in contract.failures()[0]

    patch = "from parity import zoo; from parity.tests.test_one_verdict import SPARE; zoo.CASES[SPARE.name] = SPARE"
    code = f"import sys\n{patch}\nfrom parity.__main__ import main\nsys.exit(main(sys.argv[1:]))"
    report = tmp_path / "parity.json"
    result = subprocess.run([sys.executable, "-c", code, "check", SPARE.name, "--report", str(report)], cwd=ROOT,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "verdict: FAIL" in result.stdout and ONLY_FAILURE in result.stdout
    # it said which check ran, in order
    steps = [line for line in result.stderr.splitlines() if line.startswith("[parity] ")]
    assert f"[parity] case 1/1 {SPARE.name}: check 1/8 contract" in steps
    assert steps[-1] == f"[parity] case 1/1 {SPARE.name}: check 8/8 determinism"

    entry = json.loads(report.read_text())["models"][SPARE.name]
    results = {name: CheckResult.from_dict(entry[name]) for name in CHECK_NAMES}
    assert {name for name, r in results.items() if not r.passed} == {"contract"}  # the rest pass: one reason
    assert results["contract"].failures() == contract.failures()
    assert summarize(SPARE.name, entry)["passed"] is False


def test_a_check_that_raises_is_a_failed_result_and_the_others_still_run(twin_for, tmp_path):
    from parity.checks import run_case
    from parity.report import ParityReport

    pair = twin_for(PITFALLS)
    report = ParityReport(tmp_path / "parity.json")
    # an ONNX folder that cannot be written: the onnx check fails with its error, determinism still runs
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file")
    assert run_case(pair, report, str(blocked)) is False
    entry = report.cases[PITFALLS.name]
    onnx = CheckResult.from_dict(entry["onnx"])
    assert not onnx.passed and onnx.error and "not-a-folder" in onnx.failures()[0]
    assert all(entry[name]["passed"] for name in CHECK_NAMES if name != "onnx")


def test_a_third_runner_is_one_more_row_of_the_matrix(torch_runner, tf_runner, tmp_path):
    """A pair takes one reference and several candidates: here a second TensorFlow worker under a
    name of its own stands in for a third framework.  The reference is built once, its captured
    pass shared, and each candidate judged in a row of its own."""
    from parity import frameworks
    from parity.checks import run_case
    from parity.pair import TwinPair
    from parity.report import ParityReport
    from parity.runners import FrameworkRunner

    case = dataclasses.replace(PITFALLS, name="pitfalls-matrix", factories={**PITFALLS.factories,
                                                                            "tf2": PITFALLS.factories["tf"]})
    with FrameworkRunner("tf2", adapter=frameworks.get("tf").adapter, workdir=str(tmp_path / "tf2")) as third:
        pair = TwinPair(case, {"torch": torch_runner, "tf": tf_runner, "tf2": third})
        try:
            assert pair.candidates == ("tf", "tf2") and sorted(pair.models) == ["tf", "tf2", "torch"]
            assert pair.versus("tf2").reference_run() is pair.reference_run()  # one reference pass
            report = ParityReport(tmp_path / "parity.json")
            assert run_case(pair, report, str(tmp_path)) is True
        finally:
            pair.close()
    assert set(report.cases) == {"pitfalls-matrix@tf", "pitfalls-matrix@tf2"}
    for candidate in ("tf", "tf2"):
        entry = report.cases[f"pitfalls-matrix@{candidate}"]
        assert all(entry[name]["passed"] for name in CHECK_NAMES), candidate
        assert set(entry["environment"]) == {"torch", candidate}
