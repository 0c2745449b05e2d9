"""Session-wide framework workers (imports paid once) and the parity report."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from parity import zoo
from parity.pair import TwinPair
from parity.report import ParityReport, format_table, summarize
from parity.runners import FrameworkRunner

REPORT_PATH = Path(os.environ.get("TWINFRAME_REPORTS", "reports")) / "parity.json"
THREADS = int(os.environ.get("TWINFRAME_THREADS", "1"))
DEVICE = os.environ.get("TWINFRAME_DEVICE", "cpu")
RECYCLE_BYTES = int(float(os.environ.get("TWINFRAME_RECYCLE_GB", "2")) * 2**30)

_report = ParityReport(REPORT_PATH)


def pytest_collection_modifyitems(items):
    # Mark each test by the frameworks it starts, so `-m "torch and not tf"` runs one framework alone.
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        if names & {"torch_runner", "twin_for"}:
            item.add_marker(pytest.mark.torch)
        if names & {"tf_runner", "twin_for"}:
            item.add_marker(pytest.mark.tf)


@pytest.fixture(scope="session")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("parity")


@pytest.fixture(scope="session")
def torch_runner(workdir):
    with FrameworkRunner("torch", THREADS, DEVICE, workdir=str(workdir / "torch")) as runner:
        yield runner


@pytest.fixture(scope="session")
def tf_runner(workdir):
    with FrameworkRunner("tf", THREADS, DEVICE, workdir=str(workdir / "tf")) as runner:
        yield runner


@pytest.fixture(scope="session")
def parity_report():
    yield _report
    if _report.cases:
        _report.write()


class TwinCache:
    """``twin_for(case)`` -> the built, weight-transferred pair, built once; ``release(name)``
    frees it (both workers' models and the arrays held here) once its tests are done."""

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
        if name in self.report.cases:  # only pairs whose checks were recorded get a report entry
            for section, data in pair.metadata().items():
                self.report.record(name, section, data)
        pair.close()
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


@pytest.fixture(scope="session")
def twin_for(torch_runner, tf_runner, parity_report):
    cache = TwinCache({"torch": torch_runner, "tf": tf_runner}, parity_report)
    _caches.append(cache)
    yield cache
    cache.release_all()
    _caches.remove(cache)


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item, nextitem):
    """A module's pairs are freed when its last test ends, so that the workers can be recycled
    between modules: pairs a module kept (its tests share one) once held back every restart, and
    the TF worker that then hosted the whole zoo was killed for memory at VGG-11 in CI."""
    if nextitem is None or nextitem.module is not item.module:
        for cache in _caches:
            cache.release_all()


def pytest_terminal_summary(terminalreporter):
    if _report.cases:
        terminalreporter.section("twinframe parity")
        terminalreporter.write_line(format_table([summarize(n, e) for n, e in _report.cases.items()]))
        terminalreporter.write_line(f"report: {REPORT_PATH}")
