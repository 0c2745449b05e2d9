"""The NumPy-side image pipelines (canon/augment.py): geometry, seeding, masks follow images."""

from __future__ import annotations

import numpy as np
import pytest

from repro.data import augment


def images(n=4, size=48, channels=1, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, channels), dtype=np.uint8)


@pytest.mark.parametrize("name, resize, crop, eval_resize", [
    ("aecnn_classifier", 40, 32, 40), ("aecnn_autoencoder", None, 16, 24), ("aecnn_joint", None, 32, 44)])
def test_aecnn_pipelines_crop_for_training_and_resize_for_evaluation(name, resize, crop, eval_resize):
    train, evaluation = augment.transforms(name, resize, crop, eval_resize)
    batch = images()
    trained, _ = augment.apply_to_batch(train, batch, seed=7)
    evaluated, _ = augment.apply_to_batch(evaluation, batch)
    assert trained.shape == (4, crop, crop, 1) and trained.dtype == np.uint8
    assert evaluated.shape == (4, eval_resize, eval_resize, 1)


def test_the_same_batch_seed_gives_the_same_pixels_and_another_seed_others():
    train, _ = augment.transforms("aecnn_joint", None, 32, 32)
    batch = images(n=8)
    first, second = (augment.apply_to_batch(train, batch, seed=augment.batch_seed(42, 3, 1))[0] for _ in range(2))
    other = augment.apply_to_batch(train, batch, seed=augment.batch_seed(42, 3, 2))[0]
    assert np.array_equal(first, second) and not np.array_equal(first, other)


def test_an_autoencoder_crop_is_a_patch_of_the_image_up_to_flips():
    """Stage 2 takes random patches with flips only: every output is a flipped window of its input."""
    train, _ = augment.transforms("aecnn_autoencoder", None, 8, 8)
    batch = images(n=3, size=20)
    patches, _ = augment.apply_to_batch(train, batch, seed=5)
    for image, patch in zip(batch[..., 0], patches[..., 0]):
        windows = np.lib.stride_tricks.sliding_window_view(image, (8, 8)).reshape(-1, 8, 8)
        variants = [patch, patch[::-1], patch[:, ::-1], patch[::-1, ::-1]]
        assert any((windows == v).all(axis=(1, 2)).any() for v in variants)


def test_segmentation_masks_follow_their_images():
    train, evaluation = augment.transforms("segmentation", 32, None, None)
    batch = images(n=4, size=40, channels=3)
    masks = (batch[..., :1] > 127).astype(np.uint8)
    out, out_masks = augment.apply_to_batch(train, batch, masks, seed=11)
    assert out.shape == (4, 32, 32, 3) and out_masks.shape == (4, 32, 32, 1)
    assert set(np.unique(out_masks)) <= {0, 1}
    assert augment.apply_to_batch(evaluation, batch, masks)[1].shape == (4, 32, 32, 1)


def test_no_geometry_means_no_transform_and_unknown_pipelines_are_named():
    assert augment.transforms(None) == (None, None)
    with pytest.raises(ValueError, match="unknown augmentation pipeline 'nope'"):
        augment.transforms("nope", 32)


def test_augmenting_loads_no_framework():
    """albumentations' __init__ imports torch whenever torch is installed; repro.data.augment keeps it
    out, or a TF training run would hold both frameworks."""
    import subprocess
    import sys

    code = ("import sys, numpy as np; from repro.data import augment; t, _ = augment.transforms('segmentation', 32); "
            "augment.apply_to_batch(t, np.zeros((2, 40, 40, 3), np.uint8), seed=1); "
            "print(sorted(m for m in ('torch', 'tensorflow', 'keras') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "[]"
