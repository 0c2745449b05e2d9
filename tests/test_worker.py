"""Worker protocol and failure modes, with a framework-free adapter (fast, no torch/TF)."""

import time

import pytest

from parity.worker import WorkerClient, WorkerCrashed, WorkerError, WorkerTimeout

FAKE = "tests.fake_adapter:FakeAdapter"


@pytest.fixture
def worker(tmp_path):
    with WorkerClient("fakeframe", FAKE, log_dir=tmp_path) as client:
        yield client


def test_requests_are_answered_in_a_separate_process(worker):
    import os

    answer = worker.call("echo", value=[1, "two"])
    assert answer["value"] == [1, "two"] and answer["pid"] != os.getpid()
    assert worker.call("ping") == "pong"


def test_a_remote_exception_is_reported_and_the_worker_survives(worker):
    with pytest.raises(WorkerError) as caught:
        worker.call("fail", message="bad shape (3, 4)")
    error = caught.value
    assert error.framework == "fakeframe" and error.error_type == "ValueError"
    assert "bad shape (3, 4)" in str(error) and "remote traceback" in str(error)
    assert worker.call("ping") == "pong"


def test_unknown_op_is_named(worker):
    with pytest.raises(WorkerError, match="unknown op 'fly'"):
        worker.call("fly")


@pytest.mark.parametrize("kind, status", [("segfault", "SIGSEGV"), ("kill", "SIGKILL"), ("abort", "SIGABRT"),
                                          ("exit", "exited with status 3")])
def test_a_dying_worker_is_a_crash_naming_framework_status_and_log(worker, kind, status):
    with pytest.raises(WorkerCrashed) as caught:
        worker.call("_crash", kind=kind, timeout=60)
    message = str(caught.value)
    assert message.startswith("[fakeframe worker]") and status in message
    assert f"crashing on purpose: {kind}" in message
    with pytest.raises(WorkerCrashed):  # and it stays failed, it does not hang
        worker.call("ping", timeout=5)


def test_a_hanging_worker_times_out_and_is_killed(worker):
    start = time.monotonic()
    with pytest.raises(WorkerTimeout, match=r"\[fakeframe worker\] no answer to '_crash' within 2 s"):
        worker.call("_crash", kind="hang", timeout=2)
    assert time.monotonic() - start < 15
    assert worker.process.poll() is not None


def test_an_adapter_that_cannot_import_fails_at_start_up(tmp_path):
    with pytest.raises(WorkerCrashed) as caught:
        WorkerClient("brokenframe", "tests.broken_adapter:BrokenAdapter", log_dir=tmp_path)
    assert "[brokenframe worker]" in str(caught.value)
    assert "simulated broken framework install" in str(caught.value)


def test_a_runner_reports_its_workers_memory_and_a_restart_gives_it_back(tmp_path):
    from parity.runners import FrameworkRunner

    with FrameworkRunner("fakeframe", adapter=FAKE, workdir=str(tmp_path)) as runner:
        before = runner.resident_bytes()
        pid = runner.worker.call("allocate", megabytes=300)["pid"]
        grown = runner.resident_bytes()
        assert before and grown - before > 250 * 2**20
        runner.restart()
        assert runner.worker.call("echo", value=1)["pid"] != pid
        assert runner.resident_bytes() < grown - 250 * 2**20
        assert runner.environment == {"settings": {"threads": 1, "device": "cpu", "deterministic": True}}
