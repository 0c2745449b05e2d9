"""Writing files so that no reader ever sees half of one, and the faults a test may inject.

Every file twinframe writes goes through :func:`atomic_write`: the content goes to a
temporary name beside the target (``.tmp-<pid>-<n>-<name>``: the final name stays a suffix,
as Keras checks ``.weights.h5``), is flushed to disk and renamed into place.  A writer that
is killed leaves at most a temporary, which :func:`remove_temporaries` deletes; a full disk
becomes :class:`DiskFullError` naming the file, and the target keeps its previous content.

Just before and after each rename (and each append to a run's metrics) is a *write
boundary*.  With ``TWINFRAME_FAULT=ACTION@MOMENT:PATTERN#K`` in the environment the process
meets a fault at a chosen one (see parse_fault; ACTION: ``kill`` SIGKILL, ``int`` SIGINT,
``term`` SIGTERM, ``enospc`` a full disk); with ``TWINFRAME_FAULT_TRACE=FILE`` every boundary
is appended to FILE.  The fault
suite (tests/test_run_faults.py) uses both to stop a run at every boundary of an epoch.
"""

from __future__ import annotations

import errno
import fnmatch
import itertools
import os
import shutil
import signal
from pathlib import Path
from typing import Callable

from canon.errors import ConfigError, TwinframeError

TEMPORARY_PREFIX = ".tmp-"
FAULT_ENV, TRACE_ENV = "TWINFRAME_FAULT", "TWINFRAME_FAULT_TRACE"
FAULT_ACTIONS = ("kill", "int", "term", "enospc")
_temporaries = itertools.count()
_seen: dict[str, int] = {}


class PathError(ConfigError):
    """A path given by the user that cannot be written."""


class DiskFullError(TwinframeError, OSError):
    def __init__(self, path: str | os.PathLike):
        self.path = str(path)
        super().__init__(f"no space left writing {path}")

    def __str__(self) -> str:
        return self.args[0]


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> None:
    """``write(temporary path)``, then rename into place."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f"{TEMPORARY_PREFIX}{os.getpid()}-{next(_temporaries)}-{target.name}")
    try:
        write(str(temporary))
        _fsync(temporary)
        write_boundary("before rename", target)
        os.replace(temporary, target)
    except OSError as error:
        raise disk_full_or(error, target)
    finally:
        temporary.unlink(missing_ok=True)
    write_boundary("after rename", target)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    atomic_write(path, lambda temporary: Path(temporary).write_bytes(data))


def append_line(path: str | os.PathLike, line: str) -> None:
    """One line appended (a log): a crash loses at most that line, which a reader can drop."""
    try:
        write_boundary("before append", path)
        with open(path, "a") as handle:
            handle.write(line + "\n")
    except OSError as error:
        raise disk_full_or(error, path)
    write_boundary("after append", path)


def disk_full_or(error: OSError, path) -> OSError:
    if isinstance(error, DiskFullError) or error.errno != errno.ENOSPC:
        return error
    return DiskFullError(path)


def writable_folder(folder: str | os.PathLike, option: str) -> Path | None:
    """Make ``folder`` (with its parents) and prove a file can be written in it, or raise
    naming the option, the folder and the reason.  Permission bits cannot tell (root passes
    them, a read-only mount does not care), so a probe file is written and removed.  Returns
    the topmost folder it made (None: it was there), for a caller that gives it back."""
    folder = Path(folder)
    existing = next(p for p in (folder, *folder.parents) if p.exists() or p == p.parent)
    if not existing.is_dir():
        raise PathError(f"{option} {folder}: {existing} is a file, not a folder")
    made = None if existing == folder else next(p for p in (folder, *folder.parents) if p.parent == existing)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f"{TEMPORARY_PREFIX}{os.getpid()}-probe"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as error:
        if made is not None:
            shutil.rmtree(made, ignore_errors=True)
        raise PathError(f"{option} {folder}: cannot write there ({error.strerror})") from None
    return made


def check_writable_folder(folder: str | os.PathLike, option: str) -> None:
    """As writable_folder, leaving nothing behind: a check before the work starts."""
    made = writable_folder(folder, option)
    if made is not None:
        shutil.rmtree(made, ignore_errors=True)


def remove_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Delete what killed writers left under ``folder`` (call it only while no writer runs there)."""
    found = sorted(Path(folder).rglob(f"{TEMPORARY_PREFIX}*"))
    for path in found:
        path.unlink(missing_ok=True)
    return found


def _fsync(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def write_boundary(moment: str, path) -> None:
    """A write boundary: traced and faulted only when the environment asks for it."""
    trace, fault = os.environ.get(TRACE_ENV), os.environ.get(FAULT_ENV)
    if trace:
        with open(trace, "a") as handle:
            handle.write(f"{moment}\t{path}\n")
    if fault:
        action, wanted_moment, pattern, occurrence = parse_fault(fault)
        if moment == wanted_moment and fnmatch.fnmatch(Path(path).name, pattern):
            _seen[fault] = _seen.get(fault, 0) + 1
            if _seen[fault] == occurrence:
                _inject(action, path)


def parse_fault(text: str) -> tuple[str, str, str, int]:
    """``ACTION@MOMENT:PATTERN#K``: the K-th boundary (of this process) at MOMENT on a file whose
    name matches PATTERN, e.g. ``kill@before rename:checkpoint.json#1``."""
    try:
        action, rest = text.split("@", 1)
        moment, rest = rest.split(":", 1)
        pattern, occurrence = rest.rsplit("#", 1)
        return action, moment, pattern, int(occurrence)
    except ValueError:
        raise ValueError(f"{FAULT_ENV}={text!r}: expected ACTION@MOMENT:PATTERN#K") from None


def _inject(action: str, path) -> None:
    if action not in FAULT_ACTIONS:
        raise ValueError(f"{FAULT_ENV}: unknown action {action!r}; choose from {FAULT_ACTIONS}")
    if action == "enospc":
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
    os.kill(os.getpid(), {"kill": signal.SIGKILL, "int": signal.SIGINT, "term": signal.SIGTERM}[action])
