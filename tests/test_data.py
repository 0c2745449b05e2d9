"""canon/data.py: the MedMNIST and per-sample npz formats, synthetic generators, digits, batching order."""

import re

import numpy as np
import pytest

import canon.weights
from repro.data import datasets as data
from repro.data.datasets import DataError

SMALL = (60, 12, 24)


def write_and_load(tmp_path, flag, size=28, counts=SMALL, seed=0):
    data.write_synthetic_medmnist(tmp_path, flag, size, counts, seed)
    return data.load_medmnist(flag, size, tmp_path)


def rewrite_npz(path, **changes):
    """Re-save ``path`` with some keys replaced (None removes the key)."""
    with np.load(path) as loaded:
        arrays = {key: loaded[key] for key in loaded.files}
    for key, value in changes.items():
        arrays.pop(key) if value is None else arrays.__setitem__(key, value)
    np.savez(path, **arrays)


def nearest_mean_accuracy(dataset):
    train, test = dataset.splits["train"], dataset.splits["test"]
    x_train = train.images.reshape(len(train.images), -1).astype(np.float64)
    x_test = test.images.reshape(len(test.images), -1).astype(np.float64)
    means = np.stack([x_train[train.labels[:, 0] == c].mean(0) for c in range(dataset.num_classes)])
    distances = ((x_test[:, None, :] - means[None]) ** 2).sum(-1)
    return float((distances.argmin(1) == test.labels[:, 0]).mean())


# -- MedMNIST table and file names ----------------------------------------------------------

def test_flag_table_matches_data_md():
    assert len(data.MEDMNIST_FLAGS) == 12
    assert data.MEDMNIST_FLAGS["pathmnist"] == data.MedMNISTInfo("multi-class", 3, 9, (89996, 10004, 7180))
    assert data.MEDMNIST_FLAGS["chestmnist"] == data.MedMNISTInfo("multi-label, binary-class", 1, 14,
                                                                  (78468, 11219, 22433))
    assert data.MEDMNIST_FLAGS["retinamnist"] == data.MedMNISTInfo("ordinal-regression", 3, 5, (1080, 120, 400))
    assert data.MEDMNIST_FLAGS["breastmnist"] == data.MedMNISTInfo("binary-class", 1, 2, (546, 78, 156))
    assert data.MEDMNIST_FLAGS["tissuemnist"].split_sizes == (165466, 23640, 47280)
    assert data.MEDMNIST_FLAGS["organsmnist"].num_classes == 11
    assert {info.task for info in data.MEDMNIST_FLAGS.values()} == {
        "multi-class", "multi-label, binary-class", "binary-class", "ordinal-regression"}
    assert data.MEDMNIST_SIZES == (28, 64, 128, 224)


def test_filenames():
    assert data.medmnist_filename("pathmnist", 28) == "pathmnist.npz"
    assert data.medmnist_filename("pathmnist", 64) == "pathmnist_64.npz"
    assert data.medmnist_filename("chestmnist", 224) == "chestmnist_224.npz"


def test_unknown_flag_and_size_list_the_known_ones():
    with pytest.raises(DataError, match="nosuchmnist.*pathmnist.*organsmnist"):
        data.medmnist_filename("nosuchmnist", 28)
    with pytest.raises(DataError, match=r"\(28, 64, 128, 224\).*32"):
        data.medmnist_filename("pathmnist", 32)


# -- synthetic MedMNIST round trip --------------------------------------------------------------

@pytest.mark.parametrize("flag, channels, width, high", [
    ("octmnist", 1, 1, 3), ("bloodmnist", 3, 1, 7), ("chestmnist", 1, 14, 1)])
def test_synthetic_medmnist_round_trip(tmp_path, flag, channels, width, high):
    dataset = write_and_load(tmp_path, flag)
    assert (dataset.name, dataset.task) == (flag, data.MEDMNIST_FLAGS[flag].task)
    assert dataset.channels == channels and dataset.num_labels == width
    for split, count in zip(("train", "val", "test"), SMALL):
        images, labels = dataset.splits[split].images, dataset.splits[split].labels
        assert images.shape == (count, 28, 28, channels) and images.dtype == np.uint8
        assert labels.shape == (count, width) and labels.dtype == np.int64
        assert 0 <= labels.min() and labels.max() <= high
    assert set(np.unique(dataset.splits["train"].labels)) == set(range(high + 1))


def test_grayscale_is_stored_without_channel_axis_as_medmnist_does(tmp_path):
    path = data.write_synthetic_medmnist(tmp_path, "pneumoniamnist", 64, (5, 2, 2), seed=1)
    assert path == tmp_path / "pneumoniamnist_64.npz"
    with np.load(path) as raw:
        assert raw["train_images"].shape == (5, 64, 64)
        assert raw["train_labels"].shape == (5, 1)


def test_chestmnist_labels_present_about_30_percent(tmp_path):
    labels = write_and_load(tmp_path, "chestmnist", counts=(400, 10, 10)).splits["train"].labels
    assert 0.25 < labels.mean() < 0.35


def test_same_seed_same_bytes_other_seed_other_fingerprint(tmp_path):
    first = data.write_synthetic_medmnist(tmp_path / "a", "dermamnist", 28, SMALL, seed=3).read_bytes()
    second = data.write_synthetic_medmnist(tmp_path / "b", "dermamnist", 28, SMALL, seed=3).read_bytes()
    data.write_synthetic_medmnist(tmp_path / "c", "dermamnist", 28, SMALL, seed=4)
    assert first == second
    prints = [data.load_medmnist("dermamnist", 28, tmp_path / name).fingerprint() for name in "abc"]
    assert prints[0] == prints[1] != prints[2]
    assert re.fullmatch(r"[0-9a-f]{64}", prints[0])


def test_synthetic_signal_is_learnable(tmp_path):
    dataset = write_and_load(tmp_path, "pathmnist", counts=(180, 10, 90))
    assert nearest_mean_accuracy(dataset) > 0.8  # chance is 1/9


def test_chestmnist_signal_is_learnable_per_label(tmp_path):
    dataset = write_and_load(tmp_path, "chestmnist", counts=(300, 10, 100))
    train, test = dataset.splits["train"], dataset.splits["test"]
    x_train = train.images.reshape(len(train.images), -1).astype(np.float64)
    x_test = test.images.reshape(len(test.images), -1).astype(np.float64)
    # Projection on the difference of class means separates present from absent for each label.
    accuracies = []
    for label in range(14):
        present = train.labels[:, label] == 1
        direction = x_train[present].mean(0) - x_train[~present].mean(0)
        threshold = (x_train[present].mean(0) + x_train[~present].mean(0)) @ direction / 2
        accuracies.append(((x_test @ direction > threshold) == (test.labels[:, label] == 1)).mean())
    assert min(accuracies) > 0.8


# -- MedMNIST errors ----------------------------------------------------------------------------

def test_missing_file_names_path_and_generator(tmp_path):
    with pytest.raises(DataError) as error:
        data.load_medmnist("octmnist", 64, tmp_path)
    assert str(tmp_path / "octmnist_64.npz") in str(error.value)
    assert "write_synthetic_medmnist" in str(error.value)


@pytest.mark.parametrize("content", [b"this is not a zip file at all", b"PK\x03\x04truncated"])
def test_corrupt_file(tmp_path, content):
    path = tmp_path / "octmnist.npz"
    path.write_bytes(content)
    with pytest.raises(DataError, match=re.escape(str(path))):
        data.load_medmnist("octmnist", 28, tmp_path)


def test_truncated_real_file(tmp_path):
    path = data.write_synthetic_medmnist(tmp_path, "octmnist", 28, SMALL)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(DataError, match="not a readable .npz"):
        data.load_medmnist("octmnist", 28, tmp_path)


def test_missing_key(tmp_path):
    path = data.write_synthetic_medmnist(tmp_path, "octmnist", 28, SMALL)
    rewrite_npz(path, val_labels=None)
    with pytest.raises(DataError, match=r"octmnist\.npz has no key 'val_labels'"):
        data.load_medmnist("octmnist", 28, tmp_path)


def test_wrong_image_size(tmp_path):
    path = data.write_synthetic_medmnist(tmp_path, "octmnist", 28, SMALL)
    rewrite_npz(path, test_images=np.zeros((24, 32, 32), np.uint8))
    with pytest.raises(DataError, match=r"\[test\].*28 x 28.*\(24, 32, 32, 1\)"):
        data.load_medmnist("octmnist", 28, tmp_path)


def test_wrong_channels_and_dtype(tmp_path):
    path = data.write_synthetic_medmnist(tmp_path, "octmnist", 28, SMALL)
    rewrite_npz(path, train_images=np.zeros((60, 28, 28, 3), np.uint8))
    with pytest.raises(DataError, match=r"\[train\]: expected 1 channel"):
        data.load_medmnist("octmnist", 28, tmp_path)
    rewrite_npz(path, train_images=np.zeros((60, 28, 28), np.float32))
    with pytest.raises(DataError, match="must be uint8"):
        data.load_medmnist("octmnist", 28, tmp_path)


def test_labels_out_of_range_or_bad_shape(tmp_path):
    path = data.write_synthetic_medmnist(tmp_path, "octmnist", 28, SMALL)
    rewrite_npz(path, val_labels=np.full((12, 1), 4, np.uint8))
    with pytest.raises(DataError, match=r"octmnist\.npz \[val\]: labels must lie in 0\.\.3, found 4\.\.4"):
        data.load_medmnist("octmnist", 28, tmp_path)
    rewrite_npz(path, val_labels=np.zeros((12, 2), np.uint8))
    with pytest.raises(DataError, match=r"labels must be 12 x 1, got \(12, 2\)"):
        data.load_medmnist("octmnist", 28, tmp_path)
    rewrite_npz(path, val_labels=np.zeros((12, 1), np.float32))
    with pytest.raises(DataError, match="labels must be integers"):
        data.load_medmnist("octmnist", 28, tmp_path)


def test_chestmnist_needs_14_binary_labels(tmp_path):
    path = data.write_synthetic_medmnist(tmp_path, "chestmnist", 28, SMALL)
    rewrite_npz(path, train_labels=np.full((60, 14), 2, np.uint8))
    with pytest.raises(DataError, match=r"labels must lie in 0\.\.1"):
        data.load_medmnist("chestmnist", 28, tmp_path)
    rewrite_npz(path, train_labels=np.zeros((60, 1), np.uint8))
    with pytest.raises(DataError, match=r"labels must be 60 x 14"):
        data.load_medmnist("chestmnist", 28, tmp_path)


def test_data_error_is_a_value_error():
    assert issubclass(DataError, ValueError)


# -- atomic writes ------------------------------------------------------------------------------

def test_writers_leave_no_temp_files(tmp_path):
    data.write_synthetic_medmnist(tmp_path, "breastmnist", 28, (4, 2, 2))
    data.write_synthetic_segmentation(tmp_path, (2, 1, 1), size=16)
    data.write_synthetic_medianet(tmp_path / "medianet", (2, 1, 1), num_classes=3, size=16)
    names = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert names == ["breastmnist.npz", "medianet/test/000000.npz", "medianet/train/000000.npz",
                     "medianet/train/000001.npz", "medianet/validation/000000.npz", "segmentation.npz"]


def test_failed_write_keeps_old_file_and_no_temp(tmp_path, monkeypatch):
    path = data.write_synthetic_medmnist(tmp_path, "breastmnist", 28, (4, 2, 2), seed=0)
    before = path.read_bytes()

    def fail(*args):
        raise OSError("disk full")

    monkeypatch.setattr(canon.weights.os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        data.write_synthetic_medmnist(tmp_path, "breastmnist", 28, (4, 2, 2), seed=1)
    assert [p.name for p in tmp_path.iterdir()] == ["breastmnist.npz"]
    assert path.read_bytes() == before


# -- digits ------------------------------------------------------------------------------------

def test_digits():
    dataset = data.load_digits(seed=0)
    sizes = {name: len(split.labels) for name, split in dataset.splits.items()}
    assert list(sizes) == ["train", "val", "test"] and sum(sizes.values()) == 1797
    assert sizes["test"] == round(1797 * 0.15) == sizes["val"]
    assert (dataset.name, dataset.task, dataset.num_classes, dataset.channels) == ("digits", "multi-class", 10, 1)
    train = dataset.splits["train"]
    assert train.images.shape[1:] == (8, 8, 1) and train.images.dtype == np.uint8
    assert train.images.min() == 0 and train.images.max() == 255  # 16 -> 255
    assert set(np.unique(train.labels)) == set(range(10)) and train.labels.dtype == np.int64
    assert data.load_digits(seed=0).fingerprint() == dataset.fingerprint()
    assert data.load_digits(seed=1).fingerprint() != dataset.fingerprint()


def test_digits_scaling_matches_sklearn():
    from sklearn.datasets import load_digits

    raw = load_digits()
    merged = np.concatenate([split.images[..., 0] for split in data.load_digits().splits.values()])
    expected = np.round(raw.images * 255 / 16).astype(np.uint8)
    # The splits are a partition: the same multiset of images.
    assert sorted(map(bytes, merged)) == sorted(map(bytes, expected))


# -- MeDiANet folders ---------------------------------------------------------------------------

def test_medianet_round_trip_sorted(tmp_path):
    root = data.write_synthetic_medianet(tmp_path, counts=(12, 3, 4), num_classes=5, size=32, seed=2)
    dataset = data.load_medianet_folder(root, size=32, num_classes=5)
    assert (dataset.name, dataset.task, dataset.channels) == ("medianet", "multi-class", 3)
    train = dataset.splits["train"]
    assert train.images.shape == (12, 32, 32, 3) and train.labels.shape == (12, 1)
    assert len(dataset.splits["val"].labels) == 3 and len(dataset.splits["test"].labels) == 4
    for i, name in enumerate(sorted(p.name for p in (root / "train").iterdir())):
        with np.load(root / "train" / name) as sample:
            assert np.array_equal(sample["a"], train.images[i]) and int(sample["b"]) == train.labels[i, 0]
    again = data.write_synthetic_medianet(tmp_path / "again", (12, 3, 4), num_classes=5, size=32, seed=2)
    assert data.load_medianet_folder(again, num_classes=5).fingerprint() == dataset.fingerprint()


def test_medianet_reads_in_sorted_name_order(tmp_path):
    for name, label in [("b.npz", 1), ("c.npz", 2), ("a.npz", 0)]:  # written out of order
        for folder in ("train", "validation", "test"):
            (tmp_path / folder).mkdir(exist_ok=True)
            np.savez(tmp_path / folder / name, a=np.full((4, 4, 3), label, np.uint8), b=np.int64(label))
    dataset = data.load_medianet_folder(tmp_path, num_classes=3)
    assert dataset.splits["val"].labels[:, 0].tolist() == [0, 1, 2]
    assert dataset.splits["train"].images[:, 0, 0, 0].tolist() == [0, 1, 2]


def test_medianet_errors_name_the_file(tmp_path):
    with pytest.raises(DataError, match="not found.*train"):
        data.load_medianet_folder(tmp_path)
    root = data.write_synthetic_medianet(tmp_path, (2, 1, 1), num_classes=3, size=16)
    bad = root / "train" / "000001.npz"
    with pytest.raises(DataError, match=r"000000\.npz: image 'a' must be 224 x 224 x 3, got \(16, 16, 3\)"):
        data.load_medianet_folder(root, size=224)
    np.savez(bad, a=np.zeros((16, 16, 3), np.uint8), b=np.int64(35))
    with pytest.raises(DataError, match=re.escape(str(bad)) + ".*0..34"):
        data.load_medianet_folder(root)
    np.savez(bad, a=np.zeros((16, 16, 3), np.uint8))
    with pytest.raises(DataError, match=re.escape(str(bad)) + " has no key 'b'"):
        data.load_medianet_folder(root)
    np.savez(bad, a=np.zeros((16, 16), np.uint8), b=np.int64(0))
    with pytest.raises(DataError, match=re.escape(str(bad)) + ".*H x W x 3"):
        data.load_medianet_folder(root)
    np.savez(bad, a=np.zeros((8, 8, 3), np.uint8), b=np.int64(0))
    with pytest.raises(DataError, match=re.escape(str(bad)) + ".*differs"):
        data.load_medianet_folder(root)


# -- segmentation -------------------------------------------------------------------------------

def test_segmentation_round_trip_and_signal(tmp_path):
    path = data.write_synthetic_segmentation(tmp_path, counts=(8, 2, 3), size=32, seed=5)
    assert path == tmp_path / "segmentation.npz"
    dataset = data.load_segmentation(path)
    assert (dataset.task, dataset.num_classes, dataset.channels, dataset.num_labels) == ("segmentation", 1, 3, 1)
    train = dataset.splits["train"]
    assert train.images.shape == (8, 32, 32, 3) and train.images.dtype == np.uint8
    assert train.labels.shape == (8, 32, 32, 1) and train.labels.dtype == np.int64
    assert set(np.unique(train.labels)) == {0, 1}
    inside = train.labels[..., 0] == 1
    brightness = train.images.mean(-1)
    assert brightness[inside].mean() > brightness[~inside].mean() + 50
    assert 0.05 < inside.mean() < 0.6
    again = data.write_synthetic_segmentation(tmp_path / "again", (8, 2, 3), size=32, seed=5)
    assert again.read_bytes() == path.read_bytes()


def test_segmentation_errors(tmp_path):
    with pytest.raises(DataError, match=re.escape(str(tmp_path / "nope.npz"))):
        data.load_segmentation(tmp_path / "nope.npz")
    path = data.write_synthetic_segmentation(tmp_path, counts=(2, 1, 1), size=16)
    rewrite_npz(path, val_masks=np.full((1, 16, 16, 1), 2, np.uint8))
    with pytest.raises(DataError, match=r"\[val\]: mask values must be 0 or 1"):
        data.load_segmentation(path)
    rewrite_npz(path, val_masks=np.zeros((1, 8, 8, 1), np.uint8))
    with pytest.raises(DataError, match=r"\[val\]: masks must be \(1, 16, 16, 1\)"):
        data.load_segmentation(path)


# -- batching -----------------------------------------------------------------------------------

def test_epoch_order_deterministic_per_epoch():
    first = data.epoch_order(7, 3, 100)
    assert np.array_equal(first, data.epoch_order(7, 3, 100))
    assert np.array_equal(np.sort(first), np.arange(100))
    assert not np.array_equal(first, data.epoch_order(7, 4, 100))
    assert not np.array_equal(first, data.epoch_order(8, 3, 100))
    assert np.array_equal(first, np.random.default_rng([7, 3]).permutation(100))


@pytest.mark.parametrize("n, batch_size, drop_last, sizes", [
    (10, 4, False, [4, 4, 2]), (10, 4, True, [4, 4]), (8, 4, True, [4, 4]), (3, 4, True, []), (0, 4, False, [])])
def test_batch_slices(n, batch_size, drop_last, sizes):
    batches = data.batch_slices(n, batch_size, drop_last)
    assert [len(b) for b in batches] == sizes
    covered = np.concatenate(batches) if batches else np.array([], int)
    assert np.array_equal(covered, np.arange(sum(sizes)))  # each index once, in order


def test_batch_size_must_be_positive():
    with pytest.raises(DataError, match="batch_size"):
        data.batch_slices(10, 0)


def test_to_float_nchw():
    images = np.arange(2 * 3 * 4 * 2, dtype=np.uint8).reshape(2, 3, 4, 2) * 5
    out = data.to_float_nchw(images)
    assert out.shape == (2, 2, 3, 4) and out.dtype == np.float32 and out.flags.c_contiguous
    assert out[1, 1, 2, 3] == np.float32(images[1, 2, 3, 1]) / np.float32(255)
    assert data.to_float_nchw(np.array([[[[255]]]], np.uint8))[0, 0, 0, 0] == 1.0


def test_subset(tmp_path):
    dataset = write_and_load(tmp_path, "octmnist")
    small = data.subset(dataset, {"train": 5, "test": 2})
    assert [len(s.labels) for s in small.splits.values()] == [5, 12, 2]
    assert np.array_equal(small.splits["train"].images, dataset.splits["train"].images[:5])
    assert [len(s.images) for s in data.subset(dataset, 3).splits.values()] == [3, 3, 3]


def test_synthetic_medianet_refuses_a_folder_that_already_holds_samples(tmp_path):
    data.write_synthetic_medianet(tmp_path, (3, 1, 1), num_classes=3, size=16)
    with pytest.raises(data.DataError, match="already holds samples"):
        data.write_synthetic_medianet(tmp_path, (2, 1, 1), num_classes=3, size=16)
    assert len(list((tmp_path / "train").glob("*.npz"))) == 3  # nothing lost, nothing stale


@pytest.mark.parametrize("n, batch_size, sizes", [
    (10, 4, [4, 4, 2]), (9, 4, [4, 4]), (1257, 8, [8] * 157), (1, 4, [1]), (8, 4, [4, 4])])
def test_training_batches_never_end_on_a_single_sample(n, batch_size, sizes):
    """One sample through training BatchNorm with a 1x1 map: torch raises, Keras gives zeros."""
    assert [len(b) for b in data.training_batches(n, batch_size)] == sizes
