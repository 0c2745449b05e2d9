"""The parity checks, one module each; every check returns a :class:`parity.verdict.CheckResult`.

:func:`run_case` runs them all on one pair, in order, for ``python -m parity check``; the
pytest suite calls the same functions and asserts the same ``result.passed``.
"""

from __future__ import annotations

from typing import Callable

from parity import frameworks
from parity.checks.contract import check_contract, check_transfer
from parity.checks.determinism import check_determinism
from parity.checks.gradients import check_float64, check_gradients
from parity.checks.layerwise import check_layerwise, check_weights_file
from parity.checks.onnx import check_onnx
from parity.pair import ParityCase, TwinPair, corrupt_weights
from parity.verdict import CHECK_NAMES, CheckResult

__all__ = ["ParityCase", "TwinPair", "corrupt_weights", "run_case", "run_checks", "row_name", "rows", "CHECK_NAMES", "check_contract",
           "check_transfer", "check_layerwise", "check_weights_file", "check_float64", "check_gradients",
           "check_onnx", "check_determinism"]


def _steps(workdir: str) -> list[tuple[str, Callable[[TwinPair], CheckResult | tuple[CheckResult, ...]]]]:
    """(what the progress line says, the check) in the order run_case runs them."""
    return [
        ("contract", check_contract),
        ("transfer", check_transfer),
        ("layerwise_propagated", lambda pair: check_layerwise(pair, "propagated")),
        ("layerwise_isolated", lambda pair: check_layerwise(pair, "isolated")),
        ("float64 (layers and gradients)", check_float64),
        ("gradients", check_gradients),
        ("onnx", lambda pair: check_onnx(pair, workdir)),
        ("determinism", check_determinism),
    ]


_FAILED_TOGETHER = {"float64 (layers and gradients)": ("layerwise_float64", "gradients_float64")}


def row_name(pair: TwinPair) -> str:
    """The report row of a pair seen with its candidate: the case's name, or ``case@candidate``
    where the pair has several candidates."""
    return pair.case.name if len(pair.candidates) == 1 else f"{pair.case.name}@{pair.other_name}"


def rows(pair: TwinPair) -> dict[str, TwinPair]:
    """Each candidate's view of the pair, keyed by its report row."""
    views = [pair.versus(candidate) for candidate in pair.candidates]
    return {row_name(view): view for view in views}


def run_case(pair: TwinPair, report, workdir: str, progress: Callable[[str, int, int, str], None] | None = None) -> bool:
    """Every check of one pair, each recorded in ``report`` as soon as it is done; True when all
    pass.  A check that raises is recorded as a failed result with its error, and the rest still
    run.  ``progress(row, index, total, step)`` is told before each step.  With several
    candidates every one is checked against the reference, each a row of its own, named
    ``case@candidate``."""
    return all([_run_row(row, view, report, workdir, progress) for row, view in rows(pair).items()])


def run_checks(pair: TwinPair, workdir: str, progress: Callable[[int, int, str], None] | None = None,
               skip: tuple[str, ...] = ()) -> list[CheckResult]:
    """Every check of one pair (one candidate), in order, each a :class:`CheckResult`; a check
    that raises is a failed result carrying its error, and the rest still run.  ``skip`` names
    steps not to run (``"onnx"``, ``"determinism"``); a candidate that exports no ONNX file
    (``Framework.onnx_unavailable``) has no ONNX step (:func:`not_run` says why)."""
    skip = (*skip, *not_run(pair))
    steps = [(step, check) for step, check in _steps(workdir) if step not in skip]
    results = []
    for index, (step, check) in enumerate(steps, 1):
        if progress:
            progress(index, len(steps), step)
        try:
            outcome = check(pair)
            done = outcome if isinstance(outcome, tuple) else (outcome,)
        except Exception as error:  # one broken check must not hide the others' results
            done = tuple(CheckResult.from_exception(check_name, error)
                         for check_name in _FAILED_TOGETHER.get(step, (step,)))
        results.extend(done)
    return results


def not_run(pair: TwinPair) -> dict[str, str]:
    """The steps this pair's candidate cannot take, each with why."""
    row = frameworks.FRAMEWORKS.get(pair.other_name)  # None: a user's own runner, which exports as it says
    reason = row.onnx_unavailable if row else None
    return {"onnx": f"{pair.other_name} exports no ONNX file: {reason}"} if reason else {}


def _run_row(name: str, pair: TwinPair, report, workdir: str, progress) -> bool:
    told = (lambda index, total, step: progress(name, index, total, step)) if progress else None
    results = run_checks(pair, workdir, told)
    for result in results:
        report.record(name, result.check, result)
    for section, data in pair.metadata().items():
        report.record(name, section, data)
    skipped = not_run(pair)
    if skipped:
        report.record(name, "not_run", skipped)
    return all(result.passed for result in results)
