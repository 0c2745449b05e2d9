"""The processes of a data-parallel run: ``python repro/run.py --nproc N ...``.

torch: torch's own launcher (``torch.distributed.launcher``, what ``torchrun`` runs) starts N
ranks on this machine with RANK / WORLD_SIZE / MASTER_ADDR / MASTER_PORT; ``torchrun
--nproc-per-node N repro/run.py ... --out DIR`` does the same by hand, and multi-node.
tf: N processes, each with its own TF_CONFIG naming it a worker of a loopback cluster, for
MultiWorkerMirroredStrategy.

Either way a rank that fails ends the run: the others are stopped (SIGTERM, then SIGKILL after
STOP_GRACE_S), the failing rank is named with the framework and its exit status or signal,
and the run stays resumable from its last complete checkpoint (rank 0 writes every record
file atomically, and every rank passes an epoch's end only once its checkpoint is on disk).
This module loads no framework: torch's launcher is called from impl_torch/distributed.py.
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass

from parity import frameworks

EXIT_RANK_FAILED = 4
STOP_GRACE_S = 10.0  # a rank's time to leave after its peer failed, before it is stopped
COLLECTIVE_TIMEOUT_S = 300.0  # a collective that waits longer for a peer fails (the engines' own timeouts)
POLL_S = 0.1


@dataclass(frozen=True)
class World:
    """This process's place in a data-parallel run, read from the launcher's environment."""

    rank: int = 0
    processes: int = 1

    @property
    def distributed(self) -> bool:
        return self.processes > 1

    @property
    def writes(self) -> bool:
        """Only rank 0 writes the record."""
        return self.rank == 0


def world_from_environment(framework: str) -> World:
    """The TF_CONFIG launcher's worker list and task index, or else RANK and WORLD_SIZE (torchrun's)."""
    if frameworks.get(framework).launcher == TF_CONFIG_LAUNCHER:
        config = json.loads(os.environ.get("TF_CONFIG") or "{}")
        workers = config.get("cluster", {}).get("worker", [])
        return World(int(config.get("task", {}).get("index", 0)), max(len(workers), 1))
    return World(int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1")))


@dataclass(frozen=True)
class RankFailure:
    framework: str
    rank: int
    exitcode: int

    def describe(self) -> str:
        title = frameworks.get(self.framework).title
        if self.exitcode < 0:
            cause = f"was killed by {signal.Signals(-self.exitcode).name}"
        else:
            cause = f"exited with status {self.exitcode}"
        return f"{title} rank {self.rank} {cause}"


def launch(framework: str, nproc: int, command: list[str], run_dir: str) -> int:
    """Run ``command`` as ``nproc`` ranks with the framework's launcher (its row's ``launcher``,
    "module:function"); returns the run's exit status (EXIT_RANK_FAILED when a rank failed,
    after the others were stopped)."""
    started = time.perf_counter()
    module, _, function = frameworks.get(framework).launcher.partition(":")
    outcome = getattr(importlib.import_module(module), function)(nproc, command, free_ports(nproc), POLL_S,
                                                                  STOP_GRACE_S)
    if isinstance(outcome, int):
        return outcome
    failure = RankFailure(framework, *outcome)
    print(f"error: {failure.describe()} after {time.perf_counter() - started:.1f} s; the other ranks were stopped. "
          f"The run is resumable from its last complete checkpoint: python repro/run.py --resume {run_dir}",
          file=sys.stderr)
    return EXIT_RANK_FAILED


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for each in sockets:
            each.bind(("127.0.0.1", 0))
        return [each.getsockname()[1] for each in sockets]
    finally:
        for each in sockets:
            each.close()


def tf_config(ports: list[int], index: int) -> str:
    return json.dumps({"cluster": {"worker": [f"127.0.0.1:{port}" for port in ports]},
                       "task": {"type": "worker", "index": index}})


def tf_config_workers(nproc: int, command: list[str], ports: list[int], poll_s: float, grace_s: float):
    """The TF_CONFIG launcher: ``nproc`` workers of a loopback cluster on ``ports``, supervised here."""
    ranks = [subprocess.Popen(command, env={**os.environ, "TF_CONFIG": tf_config(ports, index)})
             for index in range(nproc)]
    return supervise(ranks, poll_s, grace_s)


TF_CONFIG_LAUNCHER = f"{__name__}:{tf_config_workers.__name__}"


def supervise(ranks: list[subprocess.Popen], poll_s: float, grace_s: float):
    """Wait for every rank.  Returns the exit status when all ended alike, else (the first rank
    to fail, its exit code) once the rest were given ``grace_s`` to end and then stopped.  SIGINT
    and SIGTERM here go on to every rank (they stop at their next step, resumably)."""
    def forward(signum, frame):
        for each in ranks:
            if each.poll() is None:
                each.send_signal(signum)

    previous = {each: signal.signal(each, forward) for each in (signal.SIGINT, signal.SIGTERM)}
    try:
        first = None
        while any(each.poll() is None for each in ranks):
            if first is None:
                first = next((rank for rank, each in enumerate(ranks) if each.poll() not in (None, 0)), None)
                deadline = time.monotonic() + grace_s
            elif time.monotonic() > deadline:
                stop(ranks, poll_s, grace_s)
            time.sleep(poll_s)
        codes = [each.returncode for each in ranks]
        if len(set(codes)) == 1:  # all alike: finished, stopped on request, or all interrupted
            return codes[0] if codes[0] >= 0 else 128 - codes[0]
        return first, codes[first]
    finally:
        for each, handler in previous.items():
            signal.signal(each, handler)


def stop(ranks: list[subprocess.Popen], poll_s: float, grace_s: float) -> None:
    """SIGTERM to every rank still running; SIGKILL to those still there ``grace_s`` later."""
    for each in ranks:
        if each.poll() is None:
            each.terminate()
    deadline = time.monotonic() + grace_s
    while any(each.poll() is None for each in ranks) and time.monotonic() < deadline:
        time.sleep(poll_s)
    for each in ranks:
        if each.poll() is None:
            each.kill()
            each.wait()
