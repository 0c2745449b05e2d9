"""A run's record on disk: one directory per run.

    manifest.json     command line, resolved config, seed, versions, platform, threads,
                      determinism flags, git commit, dataset fingerprint; "status" is
                      "running" until the very last write turns it "complete"
    metrics.jsonl     one JSON object per line: per step loss and lr, per epoch metrics
    weights/epoch_NNN.safetensors   canonical weights after each epoch (sha256 in metrics)
    best.safetensors, final.safetensors, final.onnx
    checkpoint.npz    what --resume needs: loop state and optimizer/RNG state
    checkpoint.safetensors          the weights belonging to that checkpoint

Every file is written to a temporary name and renamed, so a crash never leaves a
half-written file; a record whose manifest does not say "complete" is an interrupted run.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import numpy as np

from spec.errors import ConfigError
from spec.weights import atomic_write_bytes

MANIFEST, METRICS, CHECKPOINT = "manifest.json", "metrics.jsonl", "checkpoint.npz"
STATUS_RUNNING, STATUS_COMPLETE = "running", "complete"


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

    names = ("numpy", "torch", "tensorflow", "keras", "onnx", "onnxruntime", "onnxruntime-gpu", "tf2onnx", "safetensors")
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


class RunRecord:
    def __init__(self, directory: str | os.PathLike):
        self.dir = Path(directory)
        self._lines: int | None = None  # metrics.jsonl lines, counted once then kept

    # -- creation and resumption --------------------------------------------------
    @classmethod
    def create(cls, directory: str | os.PathLike, manifest: dict) -> "RunRecord":
        record = cls(directory)
        if record.dir.exists() and any(record.dir.iterdir()):
            raise ConfigError(f"run directory {record.dir} already exists and is not empty; runs are never "
                              f"overwritten (choose another --out, or --resume it if it was interrupted)")
        (record.dir / "weights").mkdir(parents=True, exist_ok=True)
        record.write_manifest({**manifest, "status": STATUS_RUNNING})
        (record.dir / METRICS).touch()
        return record

    @classmethod
    def open_for_resume(cls, directory: str | os.PathLike) -> "RunRecord":
        record = cls(directory)
        if not (record.dir / MANIFEST).is_file():
            raise ConfigError(f"--resume {record.dir}: no {MANIFEST} there; not a twinframe run directory")
        status = record.manifest().get("status")
        if status == STATUS_COMPLETE:
            raise ConfigError(f"--resume {record.dir}: the run is already complete")
        if not (record.dir / CHECKPOINT).is_file():
            raise ConfigError(f"--resume {record.dir}: no checkpoint yet (interrupted in its first epoch); start it again")
        return record

    @classmethod
    def open_complete(cls, directory: str | os.PathLike, purpose: str) -> "RunRecord":
        """A finished run to read from (``purpose`` names the option that asked for it)."""
        record = cls(directory)
        if not (record.dir / MANIFEST).is_file():
            raise ConfigError(f"{purpose} {record.dir}: no {MANIFEST} there; not a twinframe run directory")
        if record.manifest().get("status") != STATUS_COMPLETE:
            raise ConfigError(f"{purpose} {record.dir}: the run is not complete")
        return record

    def manifest(self) -> dict:
        try:
            return json.loads((self.dir / MANIFEST).read_text())
        except (OSError, json.JSONDecodeError) as error:
            raise ConfigError(f"{self.dir / MANIFEST} is unreadable: {error}") from None

    def write_manifest(self, manifest: dict) -> None:
        write_json(self.dir / MANIFEST, manifest)

    def complete(self, summary: dict) -> None:
        """The last write of a run: only now does the record look complete."""
        self.write_manifest({**self.manifest(), "status": STATUS_COMPLETE, "summary": summary})

    # -- metrics ---------------------------------------------------------------------
    def log(self, entry: dict) -> None:
        lines = self.metric_lines()
        with open(self.dir / METRICS, "a") as handle:  # appended and closed per line: a crash loses at most one
            handle.write(json.dumps(entry, sort_keys=True) + "\n")
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

    # -- checkpoint ---------------------------------------------------------------------
    def path(self, name: str) -> Path:
        return self.dir / name

    def save_array(self, name: str, array: np.ndarray) -> None:
        buffer = io.BytesIO()
        np.save(buffer, array)
        atomic_write_bytes(self.dir / name, buffer.getvalue())

    def epoch_weights(self, epoch: int) -> Path:
        return self.dir / "weights" / f"epoch_{epoch:03d}.safetensors"

    def save_checkpoint(self, loop_state: dict, optimizer_state: dict[str, np.ndarray]) -> None:
        arrays = {f"optimizer.{k}": v for k, v in optimizer_state.items()}
        arrays["loop_state"] = np.frombuffer(json.dumps(loop_state, sort_keys=True).encode(), dtype=np.uint8)
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        atomic_write_bytes(self.dir / CHECKPOINT, buffer.getvalue())

    def load_checkpoint(self) -> tuple[dict, dict[str, np.ndarray]]:
        path = self.dir / CHECKPOINT
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {k: data[k] for k in data.files}
            loop_state = json.loads(arrays.pop("loop_state").tobytes().decode())
        except Exception as error:  # zip, json and key errors alike: name the file
            raise ConfigError(f"checkpoint {path} is unreadable: {error}") from None
        return loop_state, {k[len("optimizer."):]: v for k, v in arrays.items() if k.startswith("optimizer.")}
