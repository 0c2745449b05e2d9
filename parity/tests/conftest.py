"""Session-wide framework workers (imports paid once) and the parity report."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from parity import frameworks, zoo
from parity.checks import rows
from parity.pair import TwinPair
from parity.report import ParityReport, format_table, read_cases, summarize, timestamp
from parity.runners import FrameworkRunner

REPORT_PATH = Path(os.environ.get("TWINFRAME_REPORTS", "reports")) / "parity.json"
THREADS = int(os.environ.get("TWINFRAME_THREADS", "1"))
DEVICE = os.environ.get("TWINFRAME_DEVICE", "cpu")
RECYCLE_BYTES = int(float(os.environ.get("TWINFRAME_RECYCLE_GB", "2")) * 2**30)

_report = ParityReport(REPORT_PATH)


@pytest.hookimpl(tryfirst=True)  # before -m deselects by these marks
def pytest_collection_modifyitems(items):
    # A zoo check of the full pipeline runs in `make test` for the representative cases only.
    for item in items:
        case = getattr(item, "callspec", None) and item.callspec.params.get("twin")
        if item.get_closest_marker("pipeline") and case not in zoo.EVERY_SUITE_PIPELINES:
            item.add_marker(pytest.mark.slow)
    # Mark each test by the frameworks it starts, so `-m "torch and not tf"` runs one framework alone.
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        if names & {"torch_runner", "twin_for", "twin_for_backends", "runners"}:
            item.add_marker(pytest.mark.torch)
        if names & {"tf_runner", "twin_for", "runners"}:
            item.add_marker(pytest.mark.tf)


@pytest.fixture(scope="session")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("parity")


class Runners:
    """One worker per framework of the table (``parity.frameworks``), each started when a test
    first needs it: a test of one framework starts only that one."""

    def __init__(self, workdir: Path):
        self.workdir, self.started = workdir, {}

    def __getitem__(self, name: str) -> FrameworkRunner:
        if name not in self.started:
            self.started[name] = FrameworkRunner(name, THREADS, DEVICE, workdir=str(self.workdir / name))
        return self.started[name]

    def all(self) -> dict[str, FrameworkRunner]:
        """The default matrix's workers (``frameworks.names()``)."""
        return self.of(frameworks.names())

    def of(self, names) -> dict[str, FrameworkRunner]:
        """These frameworks' workers, keyed by name: the same one per framework for every cache."""
        return {name: self[name] for name in names}

    def close(self) -> None:
        for runner in self.started.values():
            runner.close()


@pytest.fixture(scope="session")
def runners(workdir):
    started = Runners(workdir)
    yield started
    started.close()


@pytest.fixture(scope="session")
def torch_runner(runners):
    return runners["torch"]


@pytest.fixture(scope="session")
def tf_runner(runners):
    return runners["tf"]


@pytest.fixture(scope="session")
def parity_report():
    yield _report
    if _report.cases:
        _report.write()


class TwinCache:
    """``twin_for(case)`` -> the built, weight-transferred pair, built once; ``release(name)``
    frees it (every worker's models and the arrays held here) once its tests are done.  Over
    more than two frameworks each candidate's view is a report row of its own, ``case@candidate``
    (``parity.checks.rows``), as ``python -m parity check`` names them."""

    def __init__(self, runners: dict, report: ParityReport):
        self.runners, self.report = runners, report
        self.pairs: dict[str, TwinPair] = {}

    def __call__(self, case) -> TwinPair:
        """``case``: a zoo case name or a ParityCase."""
        case = zoo.get_case(case) if isinstance(case, str) else case
        if case.name not in self.pairs:
            self.pairs[case.name] = TwinPair(case, self.runners)
        return self.pairs[case.name]

    def release(self, name: str) -> None:
        pair = self.pairs.pop(name, None)
        if pair is None:
            return
        for row, view in rows(pair).items():
            if row in self.report.cases:  # only rows whose checks were recorded get a report entry
                for section, data in view.metadata().items():
                    self.report.record(row, section, data)
        pair.close()
        self.report.write_now_and_then()
        if not self.pairs:
            self.recycle_large_workers()

    def recycle_large_workers(self) -> None:
        """Restart a worker that holds more than RECYCLE_BYTES once no pair needs it: freed
        models leave framework caches behind, and on a 2-core, 24 GB CI machine a TF worker
        that had hosted the whole zoo was killed for memory."""
        for runner in self.runners.values():
            size = runner.resident_bytes()
            if size is not None and size > RECYCLE_BYTES:
                runner.restart()

    def release_all(self) -> None:
        for name in list(self.pairs):
            self.release(name)


_caches: list[TwinCache] = []


def _session_cache(runners: dict, report: ParityReport):
    cache = TwinCache(runners, report)
    _caches.append(cache)
    yield cache
    cache.release_all()
    _caches.remove(cache)


@pytest.fixture(scope="session")
def twin_for(runners, parity_report):
    """Pairs over the default matrix (torch and tf)."""
    yield from _session_cache(runners.all(), parity_report)


@pytest.fixture(scope="session")
def twin_for_backends(runners, parity_report):
    """Pairs of the reference and the Keras backend rows (``frameworks.backends()``), each row
    ``case@keras-jax`` / ``case@keras-torch`` in the report; no tf worker: the tf row of the same
    case is ``twin_for``'s, judged once."""
    yield from _session_cache(runners.of((frameworks.REFERENCE,) + frameworks.backends()), parity_report)


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item, nextitem):
    """A module's pairs are freed when its last test ends, so that the workers can be recycled
    between modules: pairs a module kept (its tests share one) once held back every restart, and
    the TF worker that then hosted the whole zoo was killed for memory at VGG-11 in CI."""
    if nextitem is None or nextitem.module is not item.module:
        for cache in _caches:
            cache.release_all()


def pytest_sessionstart(session):
    session.config._twinframe_started = timestamp()


def pytest_terminal_summary(terminalreporter, config):
    """The table of the cases this session ran.  Under pytest-xdist the workers wrote them to the
    report (merged, locked); the controller, which ran none, reads them back."""
    cases = _report.cases or {name: entry for name, entry in read_cases(REPORT_PATH).items()
                              if entry.get("generated", "") >= getattr(config, "_twinframe_started", "~")}
    if cases and not os.environ.get("PYTEST_XDIST_WORKER"):
        terminalreporter.section("twinframe parity")
        terminalreporter.write_line(format_table([summarize(n, e) for n, e in sorted(cases.items())]))
        terminalreporter.write_line(f"report: {REPORT_PATH}")



@pytest.fixture(scope="session")
def twin_workers(runners):
    """The pytest plugin's workers (parity.pytest_plugin) are this suite's own."""
    return runners.all()
