"""Long-lived framework worker processes and the client that drives them.

One worker hosts one framework.  Requests go to the worker's stdin as JSON
lines; answers come back as JSON lines on a dedicated pipe (stdout is left to
the framework's own chatter, which goes to a log file with stderr).  Arrays
never cross the pipe: they travel as files named in the request.

A worker that dies (segfault, abort, out-of-memory kill) or stops answering is
reported as :class:`WorkerCrashed` / :class:`WorkerTimeout`, naming the
framework and showing the tail of its log, within a bounded time.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

from parity import frameworks
from parity.protocol import load_adapter

DEFAULT_STARTUP_TIMEOUT = 300.0
DEFAULT_CALL_TIMEOUT = 1800.0
LOG_TAIL_LINES = 30


class WorkerFailure(RuntimeError):
    """Base of every worker failure; ``framework`` names the side at fault."""

    def __init__(self, framework: str, message: str):
        super().__init__(f"[{framework} worker] {message}")
        self.framework = framework


class WorkerError(WorkerFailure):
    """The request raised inside the worker; the worker is still usable."""

    def __init__(self, framework: str, op: str, error_type: str, message: str, remote_traceback: str):
        super().__init__(
            framework, f"{op!r} failed with {error_type}: {message}\n--- remote traceback ---\n{remote_traceback}"
        )
        self.op, self.error_type, self.remote_message = op, error_type, message


class WorkerCrashed(WorkerFailure):
    """The worker process died."""


class WorkerTimeout(WorkerFailure):
    """The worker did not answer in time and was killed."""


def _signal_name(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exited with status {returncode}"


class WorkerClient:
    """Starts ``python -m parity.worker`` for one adapter and sends it requests."""

    def __init__(
        self,
        framework: str,
        adapter: str,
        env: dict[str, str] | None = None,
        log_dir: str | os.PathLike | None = None,
        startup_timeout: float = DEFAULT_STARTUP_TIMEOUT,
        call_timeout: float = DEFAULT_CALL_TIMEOUT,
    ):
        self.framework = framework
        self.adapter = adapter
        self.call_timeout = call_timeout
        log_dir = Path(log_dir or tempfile.mkdtemp(prefix="twinframe-logs-"))
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = log_dir / f"{framework}-worker-{os.getpid()}-{id(self)}.log"
        self._buffer = b""
        self._start(env or {}, startup_timeout)

    # -- life cycle -----------------------------------------------------------
    def _start(self, extra_env: dict[str, str], startup_timeout: float) -> None:
        read_fd, write_fd = os.pipe()
        env = {**frameworks.process_environment(self.framework), **os.environ, **extra_env}  # the user's win
        root = str(Path(__file__).resolve().parent.parent)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
        self._log = open(self.log_path, "wb")
        command = [sys.executable, "-m", "parity.worker", self.framework, self.adapter, str(write_fd)]
        self.process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=self._log, stderr=subprocess.STDOUT,
            pass_fds=(write_fd,), env=env, start_new_session=True,
        )
        os.close(write_fd)
        self._responses = read_fd
        os.set_blocking(read_fd, False)
        hello = self._read_message("start-up", startup_timeout)
        self.info = hello.get("result", {})

    def close(self) -> None:
        process = getattr(self, "process", None)
        if process is None:
            return
        if process.poll() is None:
            try:
                process.stdin.write(b'{"op": "_exit"}\n')
                process.stdin.flush()
                process.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                self._kill()
        for closer in (process.stdin.close, lambda: os.close(self._responses), self._log.close):
            try:
                closer()
            except OSError:
                pass
        self.process = None

    def __enter__(self) -> "WorkerClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def resident_bytes(self) -> int | None:
        """The worker's resident memory from /proc (Linux), None where that is not readable."""
        if self.process is None:
            return None
        try:
            status = Path(f"/proc/{self.process.pid}/status").read_text()
        except OSError:
            return None
        line = next((line for line in status.splitlines() if line.startswith("VmRSS:")), None)
        return int(line.split()[1]) * 1024 if line else None

    def _kill(self) -> None:
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.process.wait()

    # -- requests -------------------------------------------------------------
    def call(self, op: str, timeout: float | None = None, **args):
        if self.process is None:
            raise WorkerCrashed(self.framework, f"worker is closed; cannot run {op!r}")
        if self.process.poll() is not None:
            raise self._crashed(op)
        try:
            self.process.stdin.write((json.dumps({"op": op, "args": args}) + "\n").encode())
            self.process.stdin.flush()
        except OSError:
            raise self._crashed(op) from None
        answer = self._read_message(op, timeout or self.call_timeout)
        if answer.get("ok"):
            return answer.get("result")
        raise WorkerError(self.framework, op, answer["error_type"], answer["error"], answer["traceback"])

    def _read_message(self, op: str, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self._kill()
                raise WorkerTimeout(
                    self.framework, f"no answer to {op!r} within {timeout:.0f} s; worker killed.\n{self.log_tail()}"
                )
            ready, _, _ = select.select([self._responses], [], [], min(remaining, 0.5))
            if ready:
                chunk = os.read(self._responses, 1 << 16)
                if not chunk:  # pipe closed: the process is gone or going
                    self.process.wait(timeout=30)
                    raise self._crashed(op)
                self._buffer += chunk
            elif self.process.poll() is not None:
                raise self._crashed(op)
        line, self._buffer = self._buffer.split(b"\n", 1)
        return json.loads(line)

    def _crashed(self, op: str) -> WorkerCrashed:
        status = _signal_name(self.process.wait())
        return WorkerCrashed(self.framework, f"worker {status} while running {op!r}.\n{self.log_tail()}")

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        try:
            self._log.flush()
            text = self.log_path.read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            text = []
        return f"--- last {len(text)} line(s) of {self.log_path} ---\n" + "\n".join(text)


# -- the worker side ----------------------------------------------------------

def _crash(kind: str = "segfault", seconds: float = 3600.0):
    """Diagnostic op: make this worker fail in a chosen way (used by the tests)."""
    print(f"worker crashing on purpose: {kind}", file=sys.stderr, flush=True)
    if kind == "segfault":
        import ctypes

        ctypes.string_at(0)
    elif kind == "abort":
        os.abort()
    elif kind == "kill":  # what the out-of-memory killer does
        os.kill(os.getpid(), signal.SIGKILL)
    elif kind == "exit":
        os._exit(3)
    elif kind == "hang":
        time.sleep(seconds)
    elif kind == "raise":
        raise RuntimeError("failure raised on purpose")
    raise ValueError(f"unknown crash kind {kind!r}")


def serve(framework: str, adapter_name: str, response_fd: int) -> None:
    responses = os.fdopen(response_fd, "w", buffering=1)

    def answer(message: dict) -> None:
        responses.write(json.dumps(message) + "\n")
        responses.flush()

    frameworks.keep_out_others(framework)  # a user's own adapter (an unknown name) keeps everything
    adapter = load_adapter(adapter_name)
    answer({"ok": True, "result": {"framework": framework, "adapter": adapter_name, "pid": os.getpid()}})
    ops = {"ping": lambda: "pong", "_crash": _crash, **adapter.ops()}
    for line in sys.stdin:
        request = json.loads(line)
        op = request["op"]
        if op == "_exit":
            break
        try:
            if op not in ops:
                raise ValueError(f"unknown op {op!r}; this worker serves {sorted(ops)}")
            answer({"ok": True, "result": ops[op](**request.get("args", {}))})
        except Exception as error:  # reported to the client, which raises WorkerError
            answer({
                "ok": False, "error_type": type(error).__name__, "error": str(error),
                "traceback": traceback.format_exc(limit=-8),
            })


if __name__ == "__main__":
    serve(sys.argv[1], sys.argv[2], int(sys.argv[3]))
