"""Training recipes of the seed papers, framework-free (README "Training runs", Recipes).

A recipe is data: the optimizer's update formula, the learning rate of every step (a NumPy
table both frameworks read), the loss, clipping, the plateau / early-stopping rules and which
checkpoint counts as best.  Both frameworks' trainers implement exactly these semantics.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace

import numpy as np

from canon import models
from canon.errors import ConfigError
from canon.training import TRAINING_LOSSES, OptimizerSpec


@dataclass(frozen=True)
class Plateau:
    """ReduceLROnPlateau on validation loss: lr *= factor after ``patience`` epochs without a
    strictly lower loss (torch's default threshold rule, mode "rel" 1e-4)."""

    factor: float
    patience: int
    threshold: float = 1e-4


@dataclass(frozen=True)
class EarlyStopping:
    monitor: str  # "val_loss" (lower is better) or a metric (higher is better)
    patience: int
    min_lr: float | None = None  # also stop once the plateau rule took lr below this


@dataclass(frozen=True)
class Recipe:
    name: str
    optimizer: OptimizerSpec
    loss: str  # one of canon.training.TRAINING_LOSSES
    schedule: str  # medianet | cosine_per_epoch | constant
    epochs: int
    batch_size: int
    eval_batch_size: int
    seed: int
    best: str  # the validation quantity whose best epoch is the "best" checkpoint
    default_model: str
    label_smoothing: float = 0.0
    clip_norm: float | None = None
    plateau: Plateau | None = None
    early_stopping: EarlyStopping | None = None
    procedure: str = "end_to_end"  # medmnist_plus: end_to_end | linear_probing | knn
    input_size: int | None = None  # zero-pad centrally to this size (medmnist_plus)
    # mean, std; or PER_MODEL: the trained model's own (canon.models.mean_std), resolved by get_recipe
    normalize: tuple[tuple[float, ...], tuple[float, ...]] | str | None = None
    to_rgb: bool = False  # replicate grayscale to 3 channels
    knn_k: int = 11
    # Image geometry of the NumPy-side pipeline (canon/augment.py): training resizes to ``resize``
    # (when set), then takes a random ``crop`` (when set) and applies ``augment``'s transforms;
    # evaluation only resizes to ``eval_resize`` (default: ``resize``).
    resize: int | None = None
    crop: int | None = None
    eval_resize: int | None = None
    augment: str | None = None  # a pipeline of repro.data.augment.PIPELINES
    stage: int | None = None  # aecnn: 1 classifier, 2 autoencoder, 3 joint
    # the stages whose best weights start this one, with the prefix their names get here
    init_from: tuple[tuple[int, str], ...] = ()
    notes: tuple[str, ...] = field(default_factory=tuple)
    seeds: tuple[int, ...] = ()  # the paper's seeds, for a whole row of its table (``seed`` is the first)
    quirks: tuple[str, ...] = ()  # behaviours of the seed code reproduced on request (QUIRKS)

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def higher_is_better(self) -> bool:
        return self.best != "val_loss"


IMAGENET = models.IMAGENET
PER_MODEL = "per_model"
# What the seed code did where it is not sound, reproduced only when asked (run.py --quirk NAME):
# name -> (the procedure it belongs to, what it does).
QUIRKS = {
    "linear_probing_train_mode": ("linear_probing", "linear probing runs the frozen network in train mode, as the MedMNIST+ code did "
                                 "(BatchNorm statistics drift with every batch, dropout stays on); by default it "
                                 "stays in eval mode"),
    "knn_auc_zero": ("knn", "kNN reports AUC as 0, as the MedMNIST+ code did; by default its AUC is computed from the "
                    "neighbours' votes (the fraction of the k neighbours of each class)"),
}
AECNN_REPORT_SIZE = 1024  # the report's image size; its crop sizes below are for these
# The AECNN report's three stages share the optimizer (Adam 1e-4, coupled L2 1e-5), the plateau
# rule on validation loss (x0.1 after 5 epochs), 20 epochs, batch 16 and seed 42.  Sizes are the
# report's, for its 1024 px images: stage 1 resizes to 256 and crops 224, stage 2 takes 128 px
# patches, stage 3 crops 896; validation resizes to 256, 128 and 896.
_AECNN = dict(optimizer=OptimizerSpec(1e-4, weight_decay=1e-5), schedule="constant", epochs=20, batch_size=16,
              eval_batch_size=16, seed=42, best="val_loss", plateau=Plateau(0.1, 5))
AECNN_STAGES: dict[int, Recipe] = {
    1: Recipe("aecnn", loss="bce_logits", default_model="densenet121", resize=256, crop=224, eval_resize=256,
              augment="aecnn_classifier", to_rgb=True, normalize=IMAGENET, stage=1, **_AECNN),
    2: Recipe("aecnn", loss="mse", default_model="aecnn_autoencoder", crop=128, eval_resize=128,
              augment="aecnn_autoencoder", stage=2, **_AECNN),
    3: Recipe("aecnn", loss="aecnn_joint", default_model="aecnn", crop=896, eval_resize=896, augment="aecnn_joint",
              stage=3, init_from=((1, "classifier."), (2, "")), **_AECNN),
}

RECIPES: dict[str, Recipe] = {
    recipe.name: recipe
    for recipe in (
        Recipe("medianet", OptimizerSpec(1.6e-3, eps=1e-7, eps_placement="v", weight_decay=0.01, decoupled=True),
               loss="cross_entropy", label_smoothing=0.1, schedule="medianet", epochs=400, batch_size=192,
               eval_batch_size=192, seed=153, best="val_acc", default_model="medianet_base69"),
        Recipe("medmnist_plus", OptimizerSpec(1e-4, eps=1e-8, weight_decay=0.01, decoupled=True),
               loss="cross_entropy", schedule="cosine_per_epoch", epochs=100, batch_size=64, eval_batch_size=256,
               seed=9930641, best="val_loss", default_model="resnet18",
               early_stopping=EarlyStopping("val_loss", 5), input_size=224, normalize=PER_MODEL, to_rgb=True,
               seeds=(9930641, 115149041, 252139603),
               notes=("each architecture's own mean/std (timm's default config; AlexNet: ImageNet), applied "
                      "before the zero padding to input_size",
                      "linear_probing keeps the frozen network in eval mode (BN statistics fixed, dropout off); "
                      "the original left it in train mode (quirk linear_probing_train_mode)",
                      "knn scores AUC from the neighbours' votes; the original reported 0 (quirk knn_auc_zero)")),
        Recipe("chest_multilabel", OptimizerSpec(5e-5, weight_decay=1e-4), loss="bce_logits", schedule="constant",
               epochs=100, batch_size=32, eval_batch_size=64, seed=153, best="val_loss", default_model="resnet18",
               clip_norm=1.0, plateau=Plateau(0.5, 3), early_stopping=EarlyStopping("val_loss", 10, min_lr=1e-6)),
        Recipe("segmentation", OptimizerSpec(1e-4), loss="bce_dice", schedule="constant", epochs=100, batch_size=8,
               eval_batch_size=8, seed=153, best="val_dice", default_model="unet", clip_norm=1.0, resize=256,
               augment="segmentation"),
        AECNN_STAGES[1],
    )
}
PROCEDURES = ("end_to_end", "linear_probing", "knn")


def get_recipe(name: str, model: str | None = None, **overrides) -> Recipe:
    """A recipe with ``overrides`` applied; aecnn needs ``stage`` (1, 2 or 3).  ``model``: the
    model it trains, whose mean/std a per-model normalisation takes (required for those)."""
    if name not in RECIPES:
        raise ConfigError(f"unknown recipe {name!r}; known recipes: {', '.join(sorted(RECIPES))}")
    recipe = RECIPES[name]
    if name == "aecnn":
        if overrides.get("stage") not in AECNN_STAGES:
            raise ConfigError(f"recipe 'aecnn' has three stages; choose stage 1, 2 or 3, got {overrides.get('stage')!r}")
        recipe = AECNN_STAGES[overrides["stage"]]
    elif overrides.get("stage") is not None:
        raise ConfigError(f"only the aecnn recipe has stages, not {name!r}")
    unknown = sorted(set(overrides) - set(recipe.__dataclass_fields__))
    if unknown:
        raise ConfigError(f"recipe {name!r} has no option(s) {unknown}")
    if overrides.get("procedure", recipe.procedure) not in PROCEDURES:
        raise ConfigError(f"procedure must be one of {PROCEDURES}, got {overrides['procedure']!r}")
    if overrides.get("procedure", "end_to_end") != "end_to_end" and name != "medmnist_plus":
        raise ConfigError(f"procedure {overrides['procedure']!r} belongs to the medmnist_plus recipe, not {name!r}")
    for key in ("epochs", "batch_size", "eval_batch_size", "resize", "crop", "eval_resize"):
        if overrides.get(key) is not None and int(overrides[key]) < 1:
            raise ConfigError(f"{key} must be >= 1, got {overrides[key]!r}")
    overrides = {k: tuple(v) if k == "quirks" else v for k, v in overrides.items()}
    unknown_quirks = sorted(set(overrides.get("quirks", ())) - set(QUIRKS))
    if unknown_quirks:
        raise ConfigError(f"unknown quirk(s) {unknown_quirks}; known: {sorted(QUIRKS)}")
    if overrides.get("quirks") and name != "medmnist_plus":
        raise ConfigError(f"the quirks {sorted(QUIRKS)} belong to the medmnist_plus recipe, not {name!r}")
    recipe = replace(recipe, **overrides)
    for quirk in recipe.quirks:
        if QUIRKS[quirk][0] != recipe.procedure:
            raise ConfigError(f"quirk {quirk!r} belongs to the {QUIRKS[quirk][0]} procedure, not {recipe.procedure}")
    if recipe.loss not in TRAINING_LOSSES:
        raise ConfigError(f"recipe {name!r}: unknown loss {recipe.loss!r}; known: {TRAINING_LOSSES}")
    if recipe.normalize == PER_MODEL:
        if model is None:
            raise ConfigError(f"recipe {name!r} normalises with the model's own mean/std: give the model")
        recipe = replace(recipe, normalize=models.mean_std(model))
    return recipe


def recipe_of_run(settings: dict) -> Recipe:
    """The recipe a run's resolved settings (run.py's, as its record keeps them) describe."""
    return get_recipe(settings["recipe"], model=settings["model"], **settings["recipe_overrides"])


# -- learning-rate tables (one value per optimizer step) --------------------------

def lr_table(recipe: Recipe, steps_per_epoch: int) -> np.ndarray:
    """The learning rate of every step of the run, float64, before any plateau factor."""
    if steps_per_epoch < 1:
        raise ConfigError(f"steps_per_epoch must be >= 1, got {steps_per_epoch}")
    epochs, base = recipe.epochs, recipe.optimizer.lr
    if recipe.schedule == "constant":
        return np.full(epochs * steps_per_epoch, base)
    if recipe.schedule == "cosine_per_epoch":
        return np.repeat([cosine_epoch_lr(base, e, epochs) for e in range(epochs)], steps_per_epoch)
    if recipe.schedule == "medianet":
        return medianet_lr(epochs, steps_per_epoch)
    raise ConfigError(f"unknown schedule {recipe.schedule!r}")


def cosine_epoch_lr(base: float, epoch: int, epochs: int) -> float:
    """torch CosineAnnealingLR(T_max=epochs) stepped after each epoch, as the medmnist_plus
    script calls it: epochs 0 and 1 both at the base rate, epoch e >= 1 at
    0.5 * base * (1 + cos(pi * (e - 1) / epochs))."""
    return base if epoch == 0 else 0.5 * base * (1.0 + math.cos(math.pi * (epoch - 1) / epochs))


MEDIANET_PEAK, MEDIANET_FLOOR, MEDIANET_FINAL_FACTOR = 1.6e-3, 7e-4, 0.042
MEDIANET_PAPER_EPOCHS, MEDIANET_LINEAR_EPOCHS, MEDIANET_FLAT_EPOCHS = 400, 40, 40


def medianet_lr(epochs: int, steps_per_epoch: int) -> np.ndarray:
    """Linear 1.6e-3 -> 7e-4 over 40 epochs, cosine 7e-4 -> 7e-4 * 0.042 over (total - 80)
    epochs, then flat.  Runs shorter than the paper's 400 epochs keep the phases' shares of
    the run (10% linear, 80% cosine, the rest flat), so a short run still visits all three."""
    total = epochs * steps_per_epoch
    if epochs >= MEDIANET_PAPER_EPOCHS:
        linear = MEDIANET_LINEAR_EPOCHS * steps_per_epoch
        cosine = (epochs - 2 * MEDIANET_FLAT_EPOCHS) * steps_per_epoch
    else:
        linear = max(1, round(total * MEDIANET_LINEAR_EPOCHS / MEDIANET_PAPER_EPOCHS))
        cosine = max(1, round(total * (MEDIANET_PAPER_EPOCHS - 2 * MEDIANET_FLAT_EPOCHS) / MEDIANET_PAPER_EPOCHS))
    step = np.arange(total, dtype=np.float64)
    floor = MEDIANET_FLOOR * MEDIANET_FINAL_FACTOR
    in_cosine = np.clip(step - linear, 0, cosine) / cosine
    table = floor + 0.5 * (MEDIANET_FLOOR - floor) * (1.0 + np.cos(np.pi * in_cosine))
    ramp = MEDIANET_PEAK + (MEDIANET_FLOOR - MEDIANET_PEAK) * step / linear
    return np.where(step < linear, ramp, table)


# -- runtime rules (plateau, early stopping), on the NumPy side for both frameworks ---------

@dataclass
class PlateauState:
    """The state of ReduceLROnPlateau and early stopping, saved with every checkpoint."""

    factor: float = 1.0  # multiplies the lr table
    best_loss: float = math.inf
    bad_epochs: int = 0
    best_monitor: float | None = None
    stale_epochs: int = 0

    def update(self, recipe: Recipe, val_loss: float, monitored: float) -> bool:
        """Apply one epoch's validation results; True when training should stop."""
        if recipe.plateau is not None:
            if val_loss < self.best_loss * (1.0 - recipe.plateau.threshold):
                self.best_loss, self.bad_epochs = val_loss, 0
            else:
                self.bad_epochs += 1
                if self.bad_epochs > recipe.plateau.patience:
                    self.factor *= recipe.plateau.factor
                    self.bad_epochs = 0
        rule = recipe.early_stopping
        if rule is None:
            return False
        better = self.best_monitor is None or (monitored < self.best_monitor if rule.monitor == "val_loss"
                                               else monitored > self.best_monitor)
        self.best_monitor, self.stale_epochs = (monitored, 0) if better else (self.best_monitor, self.stale_epochs + 1)
        below_min = rule.min_lr is not None and recipe.optimizer.lr * self.factor < rule.min_lr
        return self.stale_epochs >= rule.patience or below_min


def clip_norm_at(recipe: Recipe, epoch: int) -> float | None:
    """chest_multilabel raises the clipping norm by 0.1 after every epoch past epoch 10, up to 5."""
    if recipe.clip_norm is None or recipe.name != "chest_multilabel":
        return recipe.clip_norm
    return min(5.0, recipe.clip_norm + 0.1 * max(0, epoch - 10))
