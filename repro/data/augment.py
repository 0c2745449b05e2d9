"""Seeded augmentation on the NumPy side (albumentations), so both frameworks see the same pixels.

Each batch's transform is re-seeded from (seed, epoch, batch) alone: a resumed run, or the other
framework, draws exactly the same flips, angles and colour shifts.
"""

from __future__ import annotations

import os
import sys

import numpy as np


def albumentations():
    """albumentations without its torch extras.  Its __init__ imports albumentations.pytorch, and
    so torch, whenever torch is installed: that would put torch into a TF run's process (with a
    CUDA torch build the two segfault together).  A None entry in sys.modules makes that import
    fail, which albumentations tolerates.  Its network version check is switched off too."""
    if "albumentations" not in sys.modules:
        os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
        sys.modules.setdefault("albumentations.pytorch", None)
    import albumentations as A

    return A


def _rotate(limit: int, p: float):
    import cv2

    A = albumentations()

    # torchvision's RandomRotation: nearest neighbour, zero fill outside the rotated image
    return A.Rotate(limit=limit, interpolation=cv2.INTER_NEAREST, border_mode=cv2.BORDER_CONSTANT, fill=0, p=p)


def _segmentation(size: int) -> list:
    """The segmentation seed: flips, rotate +-30, brightness/contrast, HSV, RGB shift, gamma."""
    A = albumentations()

    return [
        A.HorizontalFlip(p=0.5),
        A.VerticalFlip(p=0.5),
        A.Rotate(limit=30, p=0.5),
        A.RandomBrightnessContrast(p=0.2),
        A.HueSaturationValue(hue_shift_limit=20, sat_shift_limit=30, val_shift_limit=20, p=0.2),
        A.RGBShift(r_shift_limit=15, g_shift_limit=15, b_shift_limit=15, p=0.2),
        A.RandomGamma(gamma_limit=(80, 120), p=0.2),
    ]


def _aecnn_classifier(size: int) -> list:
    """AECNN stage 1 (torchvision in the report): flip, rotation 5 degrees, contrast jitter 0.25."""
    A = albumentations()

    return [A.HorizontalFlip(p=0.5), _rotate(5, 1.0), A.ColorJitter(brightness=0, contrast=0.25, saturation=0, hue=0,
                                                                    p=1.0)]


def _aecnn_autoencoder(size: int) -> list:
    A = albumentations()

    return [A.HorizontalFlip(p=0.5), A.VerticalFlip(p=0.5)]


def _aecnn_joint(size: int) -> list:
    A = albumentations()

    return [_rotate(5, 1.0), A.HorizontalFlip(p=0.5)]


PIPELINES = {"segmentation": _segmentation, "aecnn_classifier": _aecnn_classifier,
             "aecnn_autoencoder": _aecnn_autoencoder, "aecnn_joint": _aecnn_joint}


def transforms(augment: str | None, resize: int | None = None, crop: int | None = None,
               eval_resize: int | None = None) -> tuple:
    """(train, evaluation) albumentations pipelines.  Train: resize (when set), random crop (when
    set), then ``augment``'s transforms; evaluation: resize to ``eval_resize`` or ``resize`` only.
    Either is None when it would do nothing (the images pass unchanged)."""
    A = albumentations()

    if augment is not None and augment not in PIPELINES:
        raise ValueError(f"unknown augmentation pipeline {augment!r}; known: {sorted(PIPELINES)}")
    train = [A.Resize(height=resize, width=resize)] if resize else []
    train += [A.RandomCrop(height=crop, width=crop)] if crop else []
    train += PIPELINES[augment](crop or resize) if augment else []
    eval_size = eval_resize or resize
    evaluation = [A.Resize(height=eval_size, width=eval_size)] if eval_size else []
    return (A.Compose(train, seed=0, strict=True) if train else None,
            A.Compose(evaluation, strict=True) if evaluation else None)


def batch_seed(seed: int, epoch: int, batch: int) -> int:
    return int(np.random.SeedSequence([seed, epoch, batch]).generate_state(1)[0])


def apply_to_batch(transform, images: np.ndarray, masks: np.ndarray | None = None, seed: int | None = None):
    """uint8 N x H x W x C images (and N x H x W x 1 masks, or None) through ``transform``, one
    sample at a time in order; ``seed`` re-seeds the transform first (None: deterministic
    transforms only).  Returns (images, masks or None)."""
    if seed is not None:
        transform.set_random_seed(seed)
    out_images, out_masks = [], []
    for i, image in enumerate(images):
        result = transform(image=image) if masks is None else transform(image=image, mask=masks[i][..., 0])
        out_images.append(result["image"].reshape(result["image"].shape[:2] + (image.shape[-1],)))
        if masks is not None:
            out_masks.append(result["mask"][..., None])
    return np.stack(out_images), (np.stack(out_masks) if masks is not None else None)
