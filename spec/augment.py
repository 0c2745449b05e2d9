"""Seeded augmentation on the NumPy side (albumentations), so both frameworks see the same pixels.

Each batch's transform is re-seeded from (seed, epoch, batch) alone: a resumed run, or the other
framework, draws exactly the same flips, angles and colour shifts.
"""

from __future__ import annotations

import numpy as np


def segmentation_transforms(size: int) -> tuple:
    """The segmentation seed's pipelines: train (resize, flips, rotate +-30, brightness/contrast,
    HSV, RGB shift, gamma) and evaluation (resize only)."""
    import albumentations as A

    train = A.Compose([
        A.Resize(height=size, width=size),
        A.HorizontalFlip(p=0.5),
        A.VerticalFlip(p=0.5),
        A.Rotate(limit=30, p=0.5),
        A.RandomBrightnessContrast(p=0.2),
        A.HueSaturationValue(hue_shift_limit=20, sat_shift_limit=30, val_shift_limit=20, p=0.2),
        A.RGBShift(r_shift_limit=15, g_shift_limit=15, b_shift_limit=15, p=0.2),
        A.RandomGamma(gamma_limit=(80, 120), p=0.2),
    ], seed=137, strict=True)
    evaluation = A.Compose([A.Resize(height=size, width=size)], strict=True)
    return train, evaluation


def batch_seed(seed: int, epoch: int, batch: int) -> int:
    return int(np.random.SeedSequence([seed, epoch, batch]).generate_state(1)[0])


def apply_to_batch(transform, images: np.ndarray, masks: np.ndarray, seed: int | None = None):
    """uint8 N x H x W x C images and N x H x W x 1 masks through ``transform``, one sample at a
    time in order; ``seed`` re-seeds the transform first (None: deterministic transforms only)."""
    if seed is not None:
        transform.set_random_seed(seed)
    out_images, out_masks = [], []
    for image, mask in zip(images, masks):
        result = transform(image=image, mask=mask[..., 0])
        out_images.append(result["image"])
        out_masks.append(result["mask"][..., None])
    return np.stack(out_images), np.stack(out_masks)
