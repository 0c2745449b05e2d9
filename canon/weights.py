"""The canonical weight format, and the audit every weight transfer goes through.

A canonical weight file is a safetensors file keyed by canonical dotted name, in
PyTorch layout (conv OIHW, dense (out, in), BN weight/bias/running_mean/running_var).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from canon.errors import TransferError, WeightFileError
from canon.files import atomic_write

FORMAT = "twinframe-canonical/1"


def save_canonical(
    path: str | os.PathLike, tensors: Mapping[str, np.ndarray], metadata: Mapping[str, str] | None = None
) -> str:
    """Write canonical weights atomically; returns their content digest.

    safetensors streams the tensors to the temporary file (no in-memory copy of the file:
    VGG's is 0.5 GB, 1 GB in float64), then the header's keys are sorted in place."""
    from safetensors.numpy import save_file

    arrays = {name: np.ascontiguousarray(value) for name, value in tensors.items()}
    check_finite(arrays, source=str(path))
    meta = {"format": FORMAT, "digest": digest(arrays), **(metadata or {})}

    def write(temporary: str) -> None:
        save_file(arrays, temporary, metadata={k: str(v) for k, v in meta.items()})
        sort_header(temporary)

    atomic_write(path, write)
    return meta["digest"]


def sorted_header(header: bytes) -> bytes:
    """A safetensors JSON header with its keys sorted, padded to 8 bytes with spaces as the
    format does.  safetensors writes the metadata in hash-map order, which changes from process
    to process; sorted, equal weights and metadata give a byte-identical file (and sha256).
    Tensor offsets are relative to the data section, so the data bytes stay as they are."""
    text = json.dumps(json.loads(header), sort_keys=True, separators=(",", ":")).encode()
    return text + b" " * (-len(text) % 8)


def sort_header(path: str | os.PathLike) -> None:
    """Sort a safetensors file's header in place.  The header is compact JSON, so sorting
    keeps its length; were it ever to change, the file is rewritten whole."""
    with open(path, "r+b") as handle:
        size = int.from_bytes(handle.read(8), "little")
        header = sorted_header(handle.read(size))
        if len(header) == size:
            handle.seek(8)
            handle.write(header)
            return
    data = Path(path).read_bytes()[8 + size:]
    Path(path).write_bytes(len(header).to_bytes(8, "little") + header + data)


def load_canonical(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read a canonical weight file; every failure names the file."""
    from safetensors.numpy import load_file

    path = Path(path)
    if not path.is_file():
        raise WeightFileError(f"weight file not found: {path}")
    try:
        tensors = load_file(path)  # read tensor by tensor: no copy of the whole file in memory
    except Exception as error:  # safetensors reports corruption with several types
        raise WeightFileError(f"weight file {path} is not a readable safetensors file: {error}") from None
    check_finite(tensors, source=str(path))
    return tensors


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    from safetensors import safe_open

    with safe_open(str(path), framework="numpy") as handle:
        return dict(handle.metadata() or {})


def check_finite(tensors: Mapping[str, np.ndarray], source: str) -> None:
    for name, value in tensors.items():
        if np.issubdtype(value.dtype, np.floating) and not np.isfinite(value).all():
            bad = int((~np.isfinite(value)).sum())
            raise WeightFileError(f"{source}: tensor {name!r} has {bad} NaN/Inf value(s)")


def digest(tensors: Mapping[str, np.ndarray]) -> str:
    """sha256 over names, dtypes, shapes and bytes, independent of dict order."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        value = np.ascontiguousarray(tensors[name])
        h.update(f"{name}|{value.dtype.str}|{value.shape}|".encode())
        h.update(value.reshape(-1).view(np.uint8))  # the bytes, without a copy
    return h.hexdigest()


def merge_prefixed(parts: Sequence[tuple[str, Mapping[str, np.ndarray], str]]) -> dict[str, np.ndarray]:
    """One canonical weight set from several ``(prefix, tensors, source)`` parts, each part's names
    prefixed (AECNN stage 3 takes its classifier from stage 1 under "classifier.").  A name that
    two parts give is an error naming both sources; whether the result covers a model exactly
    is the loader's audit (:class:`WeightTransfer`)."""
    merged: dict[str, np.ndarray] = {}
    origin: dict[str, str] = {}
    for prefix, tensors, source in parts:
        for name, tensor in tensors.items():
            key = prefix + name
            if key in merged:
                raise TransferError(f"weight {key!r} is given by both {origin[key]} and {source}")
            merged[key], origin[key] = tensor, source
    return merged


def parameter_count(shapes: Mapping[str, tuple[int, ...]]) -> int:
    return int(sum(int(np.prod(shape)) for shape in shapes.values()))


class WeightTransfer:
    """Audit of one transfer of canonical tensors into a model.

    The loader declares every slot of the target with :meth:`expect`, calls
    :meth:`check`, then :meth:`take` for each slot, and finally :meth:`finish`.
    Every target slot must be filled exactly once and every source tensor used
    exactly once, with equal shapes; otherwise a :class:`TransferError` lists
    each offending tensor.
    """

    def __init__(self, source: Mapping[str, np.ndarray], target: str):
        self.source = dict(source)
        self.source_shapes = {name: tuple(value.shape) for name, value in self.source.items()}
        self.target = target
        self.expected: dict[str, tuple[int, ...]] = {}
        self.taken: dict[str, int] = {}

    def expect(self, name: str, shape: tuple[int, ...]) -> None:
        if name in self.expected:
            raise TransferError(f"{self.target}: two weights claim the canonical name {name!r}")
        self.expected[name] = tuple(int(d) for d in shape)

    def check(self) -> None:
        problems = []
        missing = sorted(set(self.expected) - set(self.source))
        unused = sorted(set(self.source) - set(self.expected))
        if missing:
            problems.append(f"missing from the source: {missing}")
        if unused:
            problems.append(f"not used by the target: {unused}")
        for name in sorted(set(self.expected) & set(self.source)):
            got, want = tuple(self.source[name].shape), self.expected[name]
            if got != want:
                problems.append(f"shape mismatch for {name!r}: source {got} vs target {want}")
        if problems:
            raise TransferError(f"cannot transfer weights into {self.target}: " + "; ".join(problems))

    def take(self, name: str) -> np.ndarray:
        if name not in self.expected:
            raise TransferError(f"{self.target}: {name!r} was taken but never declared")
        self.taken[name] = self.taken.get(name, 0) + 1
        if self.taken[name] > 1:
            raise TransferError(f"{self.target}: {name!r} assigned more than once")
        return self.source.pop(name)  # given up here: the loader holds the only copy it needs

    def finish(self) -> dict:
        not_assigned = sorted(set(self.expected) - set(self.taken))
        if not_assigned:
            raise TransferError(f"{self.target}: weights never assigned: {not_assigned}")
        return {
            "target": self.target,
            "tensors": len(self.expected),
            "parameters": parameter_count(self.expected),
            "source_parameters": parameter_count(self.source_shapes),
        }
