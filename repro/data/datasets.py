"""Datasets, framework-free (README "Training runs", Data): MedMNIST v3 npz files, MeDiANet per-sample
folders, scikit-learn's bundled digits, a segmentation set, deterministic synthetic data in the
same formats, and the data order that both frameworks consume.

Images are uint8 N x H x W x C (grayscale keeps a channel axis), labels int64 N x L
(segmentation: masks, int64 N x H x W x 1).
"""

from __future__ import annotations

import hashlib
import io
import os
import zipfile
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from canon.errors import TwinframeError
from canon.files import atomic_write_bytes


class DataError(TwinframeError, ValueError):
    """Missing, corrupt or malformed data; the message names the file at fault."""


@dataclass(frozen=True)
class MedMNISTInfo:
    task: str
    channels: int
    num_classes: int
    split_sizes: tuple[int, int, int]


MULTI_CLASS, MULTI_LABEL, BINARY, ORDINAL = "multi-class", "multi-label, binary-class", "binary-class", "ordinal-regression"
SEGMENTATION = "segmentation"
MEDMNIST_FLAGS: dict[str, MedMNISTInfo] = {
    "pathmnist": MedMNISTInfo(MULTI_CLASS, 3, 9, (89996, 10004, 7180)),
    "chestmnist": MedMNISTInfo(MULTI_LABEL, 1, 14, (78468, 11219, 22433)),
    "dermamnist": MedMNISTInfo(MULTI_CLASS, 3, 7, (7007, 1003, 2005)),
    "octmnist": MedMNISTInfo(MULTI_CLASS, 1, 4, (97477, 10832, 1000)),
    "pneumoniamnist": MedMNISTInfo(BINARY, 1, 2, (4708, 524, 624)),
    "retinamnist": MedMNISTInfo(ORDINAL, 3, 5, (1080, 120, 400)),
    "breastmnist": MedMNISTInfo(BINARY, 1, 2, (546, 78, 156)),
    "bloodmnist": MedMNISTInfo(MULTI_CLASS, 3, 8, (11959, 1712, 3421)),
    "tissuemnist": MedMNISTInfo(MULTI_CLASS, 1, 8, (165466, 23640, 47280)),
    "organamnist": MedMNISTInfo(MULTI_CLASS, 1, 11, (34561, 6491, 17778)),
    "organcmnist": MedMNISTInfo(MULTI_CLASS, 1, 11, (12975, 2392, 8216)),
    "organsmnist": MedMNISTInfo(MULTI_CLASS, 1, 11, (13932, 2452, 8827)),
}
MEDMNIST_SIZES = (28, 64, 128, 224)
SPLITS = ("train", "val", "test")


@dataclass
class Split:
    images: np.ndarray  # uint8 N x H x W x C
    labels: np.ndarray  # int64 N x L


@dataclass
class Dataset:
    name: str
    task: str
    num_classes: int
    channels: int
    splits: dict[str, Split]

    @property
    def num_labels(self) -> int:
        """L of N x L labels (14 for chestmnist); 1 for segmentation masks N x H x W x 1."""
        return int(self.splits["train"].labels.shape[-1])

    def fingerprint(self) -> str:
        """sha256 over name, task and every split's arrays (dtype, shape, bytes)."""
        digest = hashlib.sha256(f"{self.name}|{self.task}|{self.num_classes}".encode())
        for name in SPLITS:
            for array in (self.splits[name].images, self.splits[name].labels):
                digest.update(f"{name}|{array.dtype}|{array.shape}".encode())
                digest.update(np.ascontiguousarray(array).tobytes())
        return digest.hexdigest()


# -- MedMNIST ----------------------------------------------------------------

def medmnist_info(flag: str) -> MedMNISTInfo:
    if flag not in MEDMNIST_FLAGS:
        raise DataError(f"unknown MedMNIST flag {flag!r}; known flags: {', '.join(MEDMNIST_FLAGS)}")
    return MEDMNIST_FLAGS[flag]


def medmnist_filename(flag: str, size: int) -> str:
    medmnist_info(flag)
    if size not in MEDMNIST_SIZES:
        raise DataError(f"MedMNIST size must be one of {MEDMNIST_SIZES}, got {size}")
    return f"{flag}.npz" if size == 28 else f"{flag}_{size}.npz"


def load_medmnist(flag: str, size: int, root: str | os.PathLike) -> Dataset:
    info = medmnist_info(flag)
    path = Path(root).expanduser() / medmnist_filename(flag, size)
    if not path.is_file():
        raise DataError(f"MedMNIST file not found: {path} (download it with the medmnist package, or write a "
                        f"synthetic one: repro.data.datasets.write_synthetic_medmnist({str(Path(root))!r}, {flag!r}, {size}))")
    arrays = _read_npz(path)
    splits = {}
    for split in SPLITS:
        images, labels = (_key(arrays, path, f"{split}_{kind}") for kind in ("images", "labels"))
        splits[split] = _checked_split(path, split, images, labels, size, info)
    return Dataset(flag, info.task, info.num_classes, info.channels, splits)


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    """All arrays of an npz, read eagerly so that corruption inside a member surfaces here."""
    try:
        loaded = np.load(path, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):  # a bare .npy holds no keys
            raise ValueError("not an npz archive")
        with loaded:
            return {key: loaded[key] for key in loaded.files}
    except (zipfile.BadZipFile, zlib.error, ValueError, OSError, EOFError) as error:
        raise DataError(f"{path} is not a readable .npz file: {error}") from None


def _key(arrays: dict, path: Path, key: str) -> np.ndarray:
    if key not in arrays:
        raise DataError(f"{path} has no key {key!r} (keys: {sorted(arrays)})")
    return arrays[key]


def _checked_split(path, split: str, images: np.ndarray, labels: np.ndarray, size: int, info: MedMNISTInfo) -> Split:
    if images.ndim == 3:
        images = images[..., None]
    where = f"{path} [{split}]"
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:3] != (size, size):
        raise DataError(f"{where}: images must be uint8 N x {size} x {size}[x C], got {images.dtype} {images.shape}")
    if images.shape[3] != info.channels:
        raise DataError(f"{where}: expected {info.channels} channel(s), got {images.shape[3]}")
    if not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"{where}: labels must be integers, got {labels.dtype}")
    width = info.num_classes if info.task == MULTI_LABEL else 1
    labels = labels.reshape(len(labels), -1) if labels.ndim == 1 else labels
    if labels.shape != (len(images), width):
        raise DataError(f"{where}: labels must be {len(images)} x {width}, got {labels.shape}")
    high = 1 if info.task == MULTI_LABEL else info.num_classes - 1
    if labels.size and (labels.min() < 0 or labels.max() > high):
        raise DataError(f"{where}: labels must lie in 0..{high}, found {labels.min()}..{labels.max()}")
    return Split(np.ascontiguousarray(images), labels.astype(np.int64))


def _npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return buffer.getvalue()


def synthetic_images(rng: np.random.Generator, labels: np.ndarray, num_classes: int, size: int, channels: int,
                     multi_label: bool) -> np.ndarray:
    """Noise plus one fixed random pattern per class (per present label when multi-label):
    a signal a small network learns in a few epochs."""
    patterns = np.random.default_rng(12345).uniform(-1, 1, (num_classes, size, size, channels))
    noise = rng.normal(0.0, 0.5, (len(labels), size, size, channels))
    onehot = labels if multi_label else np.eye(num_classes)[labels[:, 0]]
    signal = np.tensordot(onehot.astype(np.float64), patterns, axes=1)
    return np.clip(127.5 + 50.0 * (noise + signal), 0, 255).astype(np.uint8)


def write_synthetic_medmnist(root: str | os.PathLike, flag: str, size: int = 28,
                             counts: tuple[int, int, int] = (600, 120, 120), seed: int = 0) -> Path:
    info = medmnist_info(flag)
    path = Path(root) / medmnist_filename(flag, size)
    rng = np.random.default_rng([seed, size, MEDMNIST_SIZES.index(size)])
    arrays = {}
    for split, count in zip(SPLITS, counts):
        if info.task == MULTI_LABEL:
            labels = (rng.random((count, info.num_classes)) < 0.3).astype(np.uint8)
        else:
            labels = rng.integers(0, info.num_classes, (count, 1)).astype(np.uint8)
        images = synthetic_images(rng, labels, info.num_classes, size, info.channels, info.task == MULTI_LABEL)
        arrays[f"{split}_images"] = images[..., 0] if info.channels == 1 else images
        arrays[f"{split}_labels"] = labels
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, _npz_bytes(arrays))
    return path


# -- MeDiANet per-sample folders ------------------------------------------------

MEDIANET_FOLDERS = {"train": "train", "val": "validation", "test": "test"}


def write_synthetic_medianet(root: str | os.PathLike, counts: tuple[int, int, int] = (70, 35, 35),
                             num_classes: int = 35, size: int = 224, seed: int = 0) -> Path:
    """train/, validation/, test/ of one-sample npz files.  Refuses folders that already hold
    samples: a smaller rewrite would otherwise leave stale files that the loader reads."""
    rng = np.random.default_rng(seed)
    for folder in (Path(root) / name for name in MEDIANET_FOLDERS.values()):
        if folder.is_dir() and any(folder.glob("*.npz")):
            raise DataError(f"{folder} already holds samples; write synthetic MeDiANet data into an empty folder")
    for split, count in zip(SPLITS, counts):
        folder = Path(root) / MEDIANET_FOLDERS[split]
        folder.mkdir(parents=True, exist_ok=True)
        labels = rng.integers(0, num_classes, (count, 1))
        images = synthetic_images(rng, labels, num_classes, size, 3, multi_label=False)
        for i, (image, label) in enumerate(zip(images, labels[:, 0])):
            atomic_write_bytes(folder / f"{i:06d}.npz", _npz_bytes({"a": image, "b": np.asarray(label, np.int64)}))
    return Path(root)


def load_medianet_folder(root: str | os.PathLike, size: int | None = None, num_classes: int = 35) -> Dataset:
    """train/, validation/, test/ of one-sample npz files, read in sorted file-name order.
    ``size`` checks every image is size x size; None accepts any size shared by all files."""
    splits = {}
    for split, folder_name in MEDIANET_FOLDERS.items():
        folder = Path(root).expanduser() / folder_name
        if not folder.is_dir():
            raise DataError(f"MeDiANet data folder not found: {folder} (expected train/, validation/, test/; "
                            f"repro.data.datasets.write_synthetic_medianet writes a synthetic one)")
        files = sorted(folder.glob("*.npz"))  # sorted: os.listdir order is not reproducible
        if not files:
            raise DataError(f"{folder} holds no .npz samples")
        samples = [_medianet_sample(path, size, num_classes) for path in files]
        _check_same_shape(files, [image for image, _ in samples])
        images = np.stack([image for image, _ in samples])
        labels = np.asarray([label for _, label in samples], np.int64)[:, None]
        splits[split] = Split(images, labels)
    return Dataset("medianet", MULTI_CLASS, num_classes, 3, splits)


def _medianet_sample(path: Path, size: int | None, num_classes: int) -> tuple[np.ndarray, int]:
    arrays = _read_npz(path)
    image, label = _key(arrays, path, "a"), _key(arrays, path, "b")
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise DataError(f"{path}: image 'a' must be uint8 H x W x 3, got {image.dtype} {image.shape}")
    if size is not None and image.shape[:2] != (size, size):
        raise DataError(f"{path}: image 'a' must be {size} x {size} x 3, got {image.shape}")
    if label.size != 1 or not np.issubdtype(label.dtype, np.integer) or not 0 <= label.item() < num_classes:
        raise DataError(f"{path}: label 'b' must be one integer in 0..{num_classes - 1}, got {label!r}")
    return image, int(label.item())


def _check_same_shape(files: list[Path], images: list[np.ndarray]) -> None:
    for path, image in zip(files, images):
        if image.shape != images[0].shape:
            raise DataError(f"{path}: image shape {image.shape} differs from {files[0]}'s {images[0].shape}")


# -- synthetic segmentation (images + binary masks) ----------------------------------

SEGMENTATION_FILENAME = "segmentation.npz"


def random_disc_masks(rng: np.random.Generator, count: int, size: int) -> np.ndarray:
    """uint8 count x size x size x 1 masks, each the union of 1-3 random filled ellipses."""
    rows, cols = np.mgrid[0:size, 0:size]
    masks = np.zeros((count, size, size), np.uint8)
    for mask in masks:
        for _ in range(rng.integers(1, 4)):
            centre = rng.uniform(0.2 * size, 0.8 * size, 2)
            radii = rng.uniform(0.08 * size, 0.25 * size, 2)
            inside = ((rows - centre[0]) / radii[0]) ** 2 + ((cols - centre[1]) / radii[1]) ** 2 <= 1.0
            mask[inside] = 1
    return masks[..., None]


def write_synthetic_segmentation(root: str | os.PathLike, counts: tuple[int, int, int] = (64, 16, 16),
                                 size: int = 64, seed: int = 0) -> Path:
    """root/segmentation.npz: ``{split}_images`` N x S x S x 3 uint8, ``{split}_masks`` N x S x S x 1
    uint8 0/1; pixels inside the mask are brighter (plus noise), so a network can learn the masks."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, count in zip(SPLITS, counts):
        masks = random_disc_masks(rng, count, size)
        noise = rng.normal(0.0, 25.0, (count, size, size, 3))
        arrays[f"{split}_images"] = np.clip(80.0 + 90.0 * masks + noise, 0, 255).astype(np.uint8)
        arrays[f"{split}_masks"] = masks
    path = Path(root) / SEGMENTATION_FILENAME
    atomic_write_bytes(path, _npz_bytes(arrays))
    return path


def load_segmentation(path: str | os.PathLike) -> Dataset:
    """A segmentation npz (see write_synthetic_segmentation) as a Dataset whose labels are the masks."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise DataError(f"segmentation file not found: {path} "
                        f"(repro.data.datasets.write_synthetic_segmentation writes a synthetic one)")
    arrays = _read_npz(path)
    splits = {split: _checked_segmentation_split(path, split, _key(arrays, path, f"{split}_images"),
                                                 _key(arrays, path, f"{split}_masks")) for split in SPLITS}
    return Dataset(path.stem, SEGMENTATION, 1, splits["train"].images.shape[3], splits)


def _checked_segmentation_split(path: Path, split: str, images: np.ndarray, masks: np.ndarray) -> Split:
    where = f"{path} [{split}]"
    if images.dtype != np.uint8 or images.ndim != 4:
        raise DataError(f"{where}: images must be uint8 N x H x W x C, got {images.dtype} {images.shape}")
    if masks.shape != images.shape[:3] + (1,):
        raise DataError(f"{where}: masks must be {images.shape[:3] + (1,)}, got {masks.shape}")
    if masks.size and not np.isin(masks, (0, 1)).all():
        raise DataError(f"{where}: mask values must be 0 or 1, found {np.unique(masks)[:10]}")
    return Split(images, masks.astype(np.int64))


# -- digits (bundled with scikit-learn: a small real default) ---------------------

def load_digits(seed: int = 0, val_fraction: float = 0.15, test_fraction: float = 0.15) -> Dataset:
    from sklearn.datasets import load_digits as sklearn_digits

    bunch = sklearn_digits()
    images = np.round(bunch.images * 255.0 / 16.0).astype(np.uint8)[..., None]
    labels = bunch.target.astype(np.int64)[:, None]
    order = np.random.default_rng(seed).permutation(len(labels))
    n_test, n_val = round(len(order) * test_fraction), round(len(order) * val_fraction)
    parts = {"test": order[:n_test], "val": order[n_test:n_test + n_val], "train": order[n_test + n_val:]}
    splits = {name: Split(images[np.sort(idx)], labels[np.sort(idx)]) for name, idx in parts.items()}
    return Dataset("digits", MULTI_CLASS, 10, 1, {name: splits[name] for name in SPLITS})


def subset(dataset: Dataset, counts: Mapping[str, int] | int) -> Dataset:
    """The first ``counts[split]`` samples of each split (one int: of every split), for quick runs;
    a split that ``counts`` leaves out is kept whole."""
    def first(name: str, split: Split) -> Split:
        k = counts if isinstance(counts, int) else counts.get(name, len(split.labels))
        return Split(split.images[:k], split.labels[:k])

    splits = {name: first(name, split) for name, split in dataset.splits.items()}
    return Dataset(dataset.name, dataset.task, dataset.num_classes, dataset.channels, splits)


# -- the data order both frameworks consume ------------------------------------------

def epoch_order(seed: int, epoch: int, n: int) -> np.ndarray:
    """The permutation of epoch ``epoch``: from the seed and the epoch alone, so a resumed run
    (or the other framework) sees exactly the same batches."""
    return np.random.default_rng([seed, epoch]).permutation(n)


def batch_slices(n: int, batch_size: int, drop_last: bool = False) -> list[np.ndarray]:
    if batch_size < 1:
        raise DataError(f"batch_size must be >= 1, got {batch_size}")
    stops = range(0, n - batch_size + 1 if drop_last else n, batch_size)
    return [np.arange(start, min(start + batch_size, n)) for start in stops]


def training_batches(n: int, batch_size: int) -> list[np.ndarray]:
    """An epoch's batches: a last partial batch is kept, unless it holds one sample.  Training
    BatchNorm on a single sample with a 1x1 map is an error in torch and a zero in Keras (the
    variance of one value), so the two frameworks could not agree on it; that sample is seen in
    other epochs, as the order changes every epoch."""
    batches = batch_slices(n, batch_size)
    return batches[:-1] if len(batches) > 1 and len(batches[-1]) == 1 else batches


def to_float_nchw(images: np.ndarray) -> np.ndarray:
    """uint8 N x H x W x C -> float32 N x C x H x W in [0, 1]."""
    return np.ascontiguousarray(images.transpose(0, 3, 1, 2), dtype=np.float32) / np.float32(255.0)
