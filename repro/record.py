"""A run's record on disk: one directory per run, written so that it cannot lie.

    manifest.json      command line, resolved config, seed, versions, platform, threads,
                       determinism flags, git commit, dataset fingerprint, a run id;
                       "status" is "running" until the very last write turns it "complete",
                       which also records the sha256 of every file of the record ("files")
    metrics.jsonl      one JSON object per line: per step loss and lr, per epoch metrics
    weights/epoch_NNN.safetensors   canonical weights after each epoch (sha256 in metrics)
    best.safetensors, final.safetensors, final_test_logits.npy, final.onnx
    checkpoints/epoch_NNN.npz       optimizer, RNG and loop state after epoch NNN
    checkpoint.json    the resume point, written last at each epoch's end: it names the
                       epoch, the run it belongs to and the sha256 of every part (the state
                       file, that epoch's weights, best.safetensors), so the parts can never
                       be mixed across epochs or runs; a checkpoint is this one file
    .lock              held (flock) by the one process writing the record

Every file is written to a temporary name and renamed (canon.files); metrics are appended a
line at a time.  A record is resumed only from a checkpoint whose every part verifies.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from canon.errors import ConfigError
from canon.files import (TEMPORARY_PREFIX, append_line, atomic_write, atomic_write_bytes, remove_temporaries,
                        writable_folder)

MANIFEST, METRICS, CHECKPOINT, LOCK = "manifest.json", "metrics.jsonl", "checkpoint.json", ".lock"
WEIGHTS_DIR, STATES_DIR, BEST = "weights", "checkpoints", "best.safetensors"
STATUS_RUNNING, STATUS_COMPLETE = "running", "complete"
CHECKPOINT_FORMAT = "twinframe-checkpoint/2"
# what an interrupted finish may have written; a resume removes it, finish writes it again
FINISH_FILES = ("final.safetensors", "final_test_logits.npy", "final.onnx")


def sha256_file(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_json(path: Path, document: dict) -> None:
    atomic_write_bytes(path, (json.dumps(document, indent=2, sort_keys=True) + "\n").encode())


def git_state(root: Path) -> dict:
    def git(*args):
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=30)

    try:
        commit = git("rev-parse", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.TimeoutExpired):
        return {"commit": None, "dirty": None}
    if commit.returncode != 0:
        return {"commit": None, "dirty": None}
    return {"commit": commit.stdout.strip(), "dirty": bool(dirty.stdout.strip())}


def package_versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    from parity import frameworks

    names = ("numpy", *(p for row in frameworks.FRAMEWORKS.values() for p in row.packages), "onnx", "onnxruntime",
             "onnxruntime-gpu", "tf2onnx", "safetensors")
    versions = {"python": platform.python_version()}
    for name in names:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            pass
    return versions


def platform_info() -> dict:
    return {"system": platform.platform(), "machine": platform.machine(), "processor": platform.processor(),
            "cpu_count": os.cpu_count(), "python_executable": sys.executable}


def run_identity(manifest: dict) -> dict:
    """What a checkpoint must share with the record it resumes (flat, so a mismatch names its key)."""
    settings = manifest["settings"]
    return {"run_id": manifest.get("run_id"), "framework": settings["framework"], "model": settings["model"],
            "model_config": manifest.get("model_config"), "precision": settings.get("precision", "float32"),
            "dataset": (manifest.get("dataset") or {}).get("fingerprint"),
            **{f"recipe.{key}": value for key, value in manifest.get("recipe", {}).items()}}


@dataclass
class Checkpoint:
    """A verified resume point."""

    epoch: int
    loop_state: dict
    optimizer_state: dict[str, np.ndarray]
    weights: Path
    notes: list[str] = field(default_factory=list)  # what the resume repaired, said to the user


class RunRecord:
    def __init__(self, directory: str | os.PathLike):
        self.dir = Path(directory)
        self._lines: int | None = None  # metrics.jsonl lines, counted once then kept
        self._lock_fd: int | None = None
        self._created: Path | None = None  # the topmost folder claim() made, removed by abandon()
        self._lock_made = False  # claim() made the lock file in a folder that was there
        self._digests: dict[tuple, str] = {}  # (path, inode, size, mtime) -> sha256: each written file hashed once

    # -- claiming a directory: one writer per record ----------------------------------
    @classmethod
    def claim(cls, directory: str | os.PathLike, option: str = "--out") -> "RunRecord":
        """A directory for a new run, locked: empty, new, or the stub of a run interrupted
        before its first checkpoint (replaced by start())."""
        record = cls(directory)
        record._created = writable_folder(record.dir, option)
        record._lock_made = not (record.dir / LOCK).exists()
        record._lock()
        problem = record._refusal()
        if problem:
            record.abandon()
            raise ConfigError(f"{option} {record.dir}: {problem}")
        return record

    @classmethod
    def claim_next(cls, runs_dir: str | os.PathLike, stem: str) -> "RunRecord":
        """``RUNS_DIR/STEM-rK`` for the first K no other run holds: mkdir is the arbiter, so two
        runs started together get distinct names."""
        base = Path(runs_dir)
        writable_folder(base, "--runs-dir")
        k = 1
        while True:
            directory = base / f"{stem}-r{k}"
            try:
                directory.mkdir()
            except FileExistsError:
                k += 1
                continue
            except OSError as error:
                raise ConfigError(f"--runs-dir {base}: cannot create {directory.name} ({error.strerror})") from None
            record = cls(directory)
            record._created = directory
            record._lock()
            return record

    @classmethod
    def create(cls, directory: str | os.PathLike, manifest: dict) -> "RunRecord":
        return cls.claim(directory).start(manifest)

    @classmethod
    def open_for_resume(cls, directory: str | os.PathLike) -> "RunRecord":
        record = cls(directory)
        if not record.dir.is_dir():
            raise ConfigError(f"--resume {record.dir}: no such run directory")
        if not (record.dir / MANIFEST).is_file():
            raise ConfigError(f"--resume {record.dir}: no {MANIFEST} there; not a twinframe run directory"
                              + (" (a run stopped before writing it: start it again with its command and this --out)"
                                 if record.is_empty() else ""))
        record._lock()
        if record.manifest().get("status") == STATUS_COMPLETE:
            record.release()
            raise ConfigError(f"--resume {record.dir}: the run is already complete")
        return record

    @staticmethod
    def recorded_settings(directory: str | os.PathLike) -> dict:
        """The settings a run directory's manifest holds ({} where there is none to read: the
        open that follows names what is wrong)."""
        try:
            return json.loads((Path(directory) / MANIFEST).read_text()).get("settings", {})
        except (OSError, json.JSONDecodeError, AttributeError):
            return {}

    @classmethod
    def open_complete(cls, directory: str | os.PathLike, purpose: str) -> "RunRecord":
        """A finished run to read from (``purpose`` names the option that asked for it)."""
        record = cls(directory)
        if not (record.dir / MANIFEST).is_file():
            raise ConfigError(f"{purpose} {record.dir}: no {MANIFEST} there; not a twinframe run directory")
        if record.manifest().get("status") != STATUS_COMPLETE:
            raise ConfigError(f"{purpose} {record.dir}: the run is not complete")
        return record

    def _lock(self) -> None:
        """An OS lock held for the process's life (released on any exit, kill -9 included)."""
        descriptor = os.open(self.dir / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(descriptor, 32).decode(errors="replace").strip() or "unknown"
            os.close(descriptor)
            raise ConfigError(f"run directory {self.dir} is in use by process {holder}, which is writing it; "
                              f"wait for it to end (or stop it: kill {holder})") from None
        os.ftruncate(descriptor, 0)
        os.write(descriptor, f"{os.getpid()}\n".encode())
        self._lock_fd = descriptor

    def release(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def abandon(self) -> None:
        """Give back a claimed directory that was never started: what claim() made goes."""
        self.release()
        if self._created is not None:
            shutil.rmtree(self._created, ignore_errors=True)
        elif self._lock_made:
            (self.dir / LOCK).unlink(missing_ok=True)

    def _entries(self) -> list[Path]:
        return [p for p in self.dir.iterdir() if p.name != LOCK and not p.name.startswith(TEMPORARY_PREFIX)
                and not (p.is_dir() and not any(p.iterdir()))]

    def is_empty(self) -> bool:
        return not self._entries()

    def is_stub(self) -> bool:
        """Stopped before its first checkpoint: nothing of it is worth keeping."""
        if not (self.dir / MANIFEST).is_file() or (self.dir / CHECKPOINT).exists() \
                or (self.dir / "checkpoint.npz").exists():  # an older twinframe's checkpoint: kept
            return False
        try:
            return self.manifest().get("status") == STATUS_RUNNING
        except ConfigError:
            return False

    def _refusal(self) -> str | None:
        """Why a new run may not be written here (None: it may)."""
        if self.is_empty() or self.is_stub():
            return None
        if not (self.dir / MANIFEST).is_file():
            return "the folder is not empty and holds no twinframe run; choose another --out"
        if self.manifest().get("status") == STATUS_COMPLETE:
            return "already holds a complete run; runs are never overwritten (choose another --out)"
        return (f"already exists and holds an interrupted run with a checkpoint; continue it with "
                f"python repro/run.py --resume {self.dir}, or choose another --out")

    def start(self, manifest: dict) -> "RunRecord":
        """Write the new record (status running); a stub left here is replaced first."""
        if self.is_stub():
            print(f"replacing the stub of a run interrupted before its first checkpoint in {self.dir}", file=sys.stderr)
        for entry in self._entries():
            shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
        remove_temporaries(self.dir)
        (self.dir / WEIGHTS_DIR).mkdir(exist_ok=True)
        self.write_manifest({**manifest, "run_id": uuid.uuid4().hex, "status": STATUS_RUNNING})
        atomic_write_bytes(self.dir / METRICS, b"")
        self._lines, self._created, self._lock_made = 0, None, False  # started: abandon() removes nothing now
        return self

    # -- manifest ------------------------------------------------------------------------
    def manifest(self) -> dict:
        try:
            return json.loads((self.dir / MANIFEST).read_text())
        except (OSError, json.JSONDecodeError) as error:
            raise ConfigError(f"{self.dir / MANIFEST} is unreadable: {error}") from None

    def write_manifest(self, manifest: dict) -> None:
        write_json(self.dir / MANIFEST, manifest)

    def complete(self, summary: dict) -> None:
        """The last write of a run: only now does the record look complete, and it names the
        sha256 of every file it holds, so a reader can prove the files are the run's."""
        self.write_manifest({**self.manifest(), "status": STATUS_COMPLETE, "summary": summary, "files": self.digests()})

    def digests(self) -> dict[str, str]:
        files = (p for p in sorted(self.dir.rglob("*")) if p.is_file() and p.name not in (MANIFEST, LOCK)
                 and not p.name.startswith(TEMPORARY_PREFIX))
        return {path.relative_to(self.dir).as_posix(): sha256_file(path) for path in files}

    # -- metrics ---------------------------------------------------------------------
    def log(self, entry: dict) -> None:
        lines = self.metric_lines()
        append_line(self.dir / METRICS, json.dumps(entry, sort_keys=True))
        self._lines = lines + 1

    def metrics(self) -> list[dict]:
        return [json.loads(line) for line in (self.dir / METRICS).read_text().splitlines() if line.strip()]

    def truncate_metrics(self, lines: int) -> None:
        """Drop what an interrupted run logged after its last checkpoint."""
        kept = (self.dir / METRICS).read_text().splitlines()[:lines]
        atomic_write_bytes(self.dir / METRICS, "".join(line + "\n" for line in kept).encode())
        self._lines = len(kept)

    def metric_lines(self) -> int:
        if self._lines is None:
            self._lines = len((self.dir / METRICS).read_text().splitlines())
        return self._lines

    # -- files -----------------------------------------------------------------------------
    def digest(self, path: Path) -> str:
        """sha256 of a file of the record, computed once per version of the file (an epoch's
        weights are hashed for the metrics line and again named by the checkpoint)."""
        stat = path.stat()
        key = (str(path), stat.st_ino, stat.st_size, stat.st_mtime_ns)  # a rename brings a new inode
        if key not in self._digests:
            self._digests[key] = sha256_file(path)
        return self._digests[key]

    def path(self, name: str) -> Path:
        return self.dir / name

    def save_array(self, name: str, array: np.ndarray) -> None:
        atomic_write(self.dir / name, lambda temporary: np.save(temporary, array))

    def epoch_weights(self, epoch: int) -> Path:
        return self.dir / WEIGHTS_DIR / f"epoch_{epoch:03d}.safetensors"

    # -- checkpoint ----------------------------------------------------------------------
    def has_checkpoint(self) -> bool:
        return (self.dir / CHECKPOINT).is_file()

    def save_checkpoint(self, epoch: int, loop_state: dict, optimizer_state: dict[str, np.ndarray]) -> None:
        """The state file first, then checkpoint.json naming every part's sha256: until that
        one rename, the previous checkpoint is the resume point, whole."""
        state = self.dir / STATES_DIR / f"epoch_{epoch:03d}.npz"
        arrays = {f"optimizer.{k}": v for k, v in optimizer_state.items()}
        arrays["loop_state"] = np.frombuffer(json.dumps(loop_state, sort_keys=True).encode(), dtype=np.uint8)
        atomic_write(state, lambda temporary: np.savez(temporary, **arrays))
        parts = [state, self.epoch_weights(epoch), self.dir / BEST]
        write_json(self.dir / CHECKPOINT, {
            "format": CHECKPOINT_FORMAT, "epoch": epoch, "metric_lines": loop_state["metric_lines"],
            "best_epoch": loop_state["best_epoch"], "run": run_identity(self.manifest()),
            "files": {p.relative_to(self.dir).as_posix(): self.digest(p) for p in parts}})
        for older in (self.dir / STATES_DIR).glob("epoch_*.npz"):
            if older != state:
                older.unlink()

    def load_checkpoint(self) -> Checkpoint:
        """The checkpoint, verified: the same run, every part present with its recorded sha256
        and of the same epoch, and metrics.jsonl holding every line it counts."""
        pointer = self._read_pointer()
        self._check_identity(pointer["run"])
        epoch, files = pointer["epoch"], pointer["files"]
        notes = self._verify_parts(files, pointer)
        state = self.dir / f"{STATES_DIR}/epoch_{epoch:03d}.npz"
        loop_state, optimizer_state = self._read_state(state)
        if loop_state.get("next_epoch") != epoch + 1 or loop_state.get("metric_lines") != pointer["metric_lines"]:
            raise self._damaged(f"{state.name} holds the state after epoch {loop_state.get('next_epoch', 0) - 1}, "
                                f"{CHECKPOINT} names epoch {epoch}")
        weights_digest = files.get(self.epoch_weights(epoch).relative_to(self.dir).as_posix())
        self._check_metrics(pointer["metric_lines"], epoch, weights_digest)
        return Checkpoint(epoch, loop_state, optimizer_state, self.epoch_weights(epoch), notes)

    def _read_pointer(self) -> dict:
        path = self.dir / CHECKPOINT
        if not path.is_file():
            old = " (its checkpoint is of an older twinframe, which cannot be verified)" if \
                (self.dir / "checkpoint.npz").exists() else ""
            raise ConfigError(f"--resume {self.dir}: no {CHECKPOINT}{old}; start the run again")
        try:
            pointer = json.loads(path.read_text())
            if pointer.get("format") != CHECKPOINT_FORMAT:
                raise ValueError(f"format {pointer.get('format')!r}, expected {CHECKPOINT_FORMAT!r}")
            for key in ("epoch", "metric_lines", "run", "files"):
                pointer[key]  # noqa: B018 (a KeyError names the missing key)
            return pointer
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            raise self._damaged(f"{CHECKPOINT} is unreadable ({error})") from None

    def _check_identity(self, recorded: dict) -> None:
        own = run_identity(self.manifest())
        keys = sorted(k for k in set(own) | set(recorded) if own.get(k) != recorded.get(k))
        if keys:
            listed = "; ".join(f"{k}: {recorded.get(k)!r} in the checkpoint, {own.get(k)!r} in this record"
                               for k in keys[:6])
            raise ConfigError(f"--resume {self.dir}: {CHECKPOINT} belongs to another run ({listed}); it is refused")

    def _verify_parts(self, files: dict, pointer: dict) -> list[str]:
        notes = []
        for name, digest in files.items():
            path = self.dir / name
            if path.is_file() and sha256_file(path) == digest:
                continue
            if name == BEST:  # an interrupted epoch may have replaced it: the best epoch's weights are its copy
                source = self.epoch_weights(pointer["best_epoch"])
                if source.is_file() and sha256_file(source) == digest:
                    atomic_write_bytes(path, source.read_bytes())
                    notes.append(f"{BEST} restored from {source.relative_to(self.dir)} (the interrupted epoch "
                                 f"had replaced it)")
                    continue
            raise self._damaged(f"checkpoint part {name} is " + (
                "missing" if not path.is_file() else f"not the one {CHECKPOINT} names (sha256 differs)"))
        return notes

    def _read_state(self, path: Path) -> tuple[dict, dict[str, np.ndarray]]:
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {k: data[k] for k in data.files}
            loop_state = json.loads(arrays.pop("loop_state").tobytes().decode())
        except Exception as error:  # zip, json and key errors alike: name the file
            raise self._damaged(f"checkpoint {path} is unreadable: {error}") from None
        return loop_state, {k[len("optimizer."):]: v for k, v in arrays.items() if k.startswith("optimizer.")}

    def _check_metrics(self, lines: int, epoch: int, weights_digest: str) -> None:
        text = (self.dir / METRICS).read_text().splitlines()
        if len(text) < lines:
            raise self._damaged(f"{METRICS} holds {len(text)} lines, the checkpoint of epoch {epoch} counts {lines}")
        try:
            last = json.loads(text[lines - 1]) if lines else {}
            for line in text[:lines - 1]:
                json.loads(line)
        except json.JSONDecodeError as error:
            raise self._damaged(f"{METRICS} has an unreadable line before the checkpoint's ({error})") from None
        if last.get("kind") != "epoch" or last.get("epoch") != epoch or last.get("weights_sha256") != weights_digest:
            raise self._damaged(f"line {lines} of {METRICS} is not the end of epoch {epoch} that the checkpoint names")

    def _damaged(self, what: str) -> ConfigError:
        return ConfigError(f"--resume {self.dir}: {what}; the record is damaged and cannot be resumed "
                           f"(start the run again in a new --out)")

    def prepare_resume(self, checkpoint: Checkpoint) -> list[str]:
        """Back to the checkpoint exactly: what came after it is removed (metrics lines, later
        epochs' weights and states, an interrupted finish, writers' temporaries)."""
        removed = [p.relative_to(self.dir).as_posix() for p in remove_temporaries(self.dir)]
        self.truncate_metrics(checkpoint.loop_state["metric_lines"])
        later = [p for p in (self.dir / WEIGHTS_DIR).glob("epoch_*.safetensors")
                 if int(p.stem.removeprefix("epoch_")) > checkpoint.epoch]
        later += [p for p in (self.dir / STATES_DIR).glob("epoch_*.npz")
                  if int(p.stem.removeprefix("epoch_")) != checkpoint.epoch]
        later += [self.dir / name for name in FINISH_FILES if (self.dir / name).exists()]
        for path in later:
            path.unlink()
        return removed + [p.relative_to(self.dir).as_posix() for p in later]


class FollowerRecord(RunRecord):
    """The record as a rank other than 0 of a data-parallel run holds it: it reads what rank 0
    wrote (the manifest, the checkpoint to resume from) and writes nothing."""

    def start(self, manifest: dict) -> "RunRecord":
        return self

    def write_manifest(self, manifest: dict) -> None:
        pass

    def complete(self, summary: dict) -> None:
        pass

    def log(self, entry: dict) -> None:
        pass

    def metric_lines(self) -> int:
        return 0

    def digest(self, path: Path) -> None:
        return None

    def save_array(self, name: str, array: np.ndarray) -> None:
        pass

    def save_checkpoint(self, epoch: int, loop_state: dict, optimizer_state: dict[str, np.ndarray]) -> None:
        pass

    def prepare_resume(self, checkpoint: Checkpoint) -> list[str]:
        return []
