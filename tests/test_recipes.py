"""Recipes as data: learning-rate tables, plateau and early stopping, option checks."""

import math

import numpy as np
import pytest

from canon.errors import ConfigError
from repro.recipes import PlateauState, clip_norm_at, cosine_epoch_lr, get_recipe, lr_table, medianet_lr


def test_medianet_table_at_paper_length_follows_the_three_phases():
    steps = 3
    table = medianet_lr(400, steps)
    assert len(table) == 1200
    assert table[0] == pytest.approx(1.6e-3)
    assert table[40 * steps] == pytest.approx(7e-4)  # end of the linear phase
    assert table[20 * steps] == pytest.approx((1.6e-3 + 7e-4) / 2)
    floor = 7e-4 * 0.042
    assert table[(40 + 320) * steps] == pytest.approx(floor)  # cosine over total - 80 epochs
    assert np.all(table[(40 + 320) * steps:] == pytest.approx(floor))  # then flat
    middle = (40 + 160) * steps
    assert table[middle] == pytest.approx(floor + 0.5 * (7e-4 - floor))
    assert np.all(np.diff(table) <= 1e-18)  # never rises


def test_medianet_table_of_a_short_run_keeps_the_phase_shares():
    table = medianet_lr(10, 10)  # 100 steps: 10 linear, 80 cosine, 10 flat
    assert table[0] == pytest.approx(1.6e-3) and table[10] == pytest.approx(7e-4)
    assert table[90] == pytest.approx(7e-4 * 0.042) and table[-1] == pytest.approx(7e-4 * 0.042)


def test_medmnist_plus_cosine_is_stepped_after_each_epoch():
    recipe = get_recipe("medmnist_plus", model="resnet18", epochs=100)
    table = lr_table(recipe, steps_per_epoch=2)
    assert table[0] == table[1] == table[2] == table[3] == pytest.approx(1e-4)  # epochs 0 and 1
    assert table[2 * 51] == pytest.approx(0.5 * 1e-4 * (1 + math.cos(math.pi * 50 / 100)))
    assert cosine_epoch_lr(1e-4, 100, 100) == pytest.approx(0.5 * 1e-4 * (1 + math.cos(math.pi * 99 / 100)))


def test_constant_recipes_and_bad_options():
    assert np.all(lr_table(get_recipe("chest_multilabel", epochs=2), 5) == 5e-5)
    with pytest.raises(ConfigError, match="unknown recipe 'nope'; known recipes: aecnn, chest_multilabel"):
        get_recipe("nope")
    with pytest.raises(ConfigError, match="has no option"):
        get_recipe("medianet", learning_rate=1)
    with pytest.raises(ConfigError, match="epochs must be >= 1"):
        get_recipe("medianet", epochs=0)
    with pytest.raises(ConfigError, match="belongs to the medmnist_plus recipe"):
        get_recipe("medianet", procedure="knn")


def test_plateau_halves_the_rate_after_patience_and_early_stopping_counts_epochs():
    recipe = get_recipe("chest_multilabel")  # plateau factor 0.5 patience 3, early stop after 10
    state = PlateauState()
    stops = [state.update(recipe, loss, loss) for loss in (1.0, 0.9, 0.95, 0.95, 0.95)]
    assert state.factor == 1.0 and not any(stops)
    assert not state.update(recipe, 0.95, 0.95)  # fourth epoch without improvement: reduce
    assert state.factor == 0.5
    for _ in range(4):
        stop = state.update(recipe, 0.95, 0.95)
    assert stop is False and state.stale_epochs == 8
    state.update(recipe, 0.95, 0.95)
    assert state.update(recipe, 0.95, 0.95)  # 10 epochs without a lower val loss


def test_chest_clipping_norm_grows_after_epoch_ten():
    recipe = get_recipe("chest_multilabel")
    assert [clip_norm_at(recipe, e) for e in (0, 10, 11, 15)] == pytest.approx([1.0, 1.0, 1.1, 1.5])
    assert clip_norm_at(recipe, 100) == 5.0
    assert clip_norm_at(get_recipe("medianet"), 50) is None


def test_adam_step_scalars_place_eps_as_each_framework_does():
    from canon.training import OptimizerSpec, adam_step_scalars

    torch_style = OptimizerSpec(1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01, decoupled=True)
    step_size, root, decay = adam_step_scalars(torch_style, 3, 1e-3)
    assert step_size == pytest.approx(1e-3 / (1 - 0.9 ** 3)) and root == pytest.approx(math.sqrt(1 - 0.999 ** 3))
    assert decay == pytest.approx(1 - 1e-3 * 0.01)
    keras_style = OptimizerSpec(1e-3, eps=1e-7, eps_placement="v")
    step_size, root, decay = adam_step_scalars(keras_style, 3, 1e-3)
    assert step_size == pytest.approx(1e-3 * math.sqrt(1 - 0.999 ** 3) / (1 - 0.9 ** 3)) and root == 1.0
    assert decay == 1.0  # coupled or no decay: nothing multiplies the weights


def test_aecnn_has_three_stages_sharing_optimizer_plateau_and_seed():
    stages = [get_recipe("aecnn", stage=s) for s in (1, 2, 3)]
    assert [r.loss for r in stages] == ["bce_logits", "mse", "aecnn_joint"]
    assert [r.default_model for r in stages] == ["densenet121", "aecnn_autoencoder", "aecnn"]
    assert [(r.resize, r.crop, r.eval_resize) for r in stages] == [(256, 224, 256), (None, 128, 128), (None, 896, 896)]
    for recipe in stages:
        assert recipe.optimizer.lr == 1e-4 and recipe.optimizer.weight_decay == 1e-5 and not recipe.optimizer.decoupled
        assert (recipe.plateau.factor, recipe.plateau.patience) == (0.1, 5)
        assert (recipe.epochs, recipe.batch_size, recipe.seed, recipe.best) == (20, 16, 42, "val_loss")
    assert stages[0].to_rgb and stages[0].normalize is not None and not stages[1].to_rgb
    assert stages[2].init_from == ((1, "classifier."), (2, ""))


def test_aecnn_needs_a_stage_and_only_aecnn_has_stages():
    with pytest.raises(ConfigError, match="choose stage 1, 2 or 3"):
        get_recipe("aecnn")
    with pytest.raises(ConfigError, match="only the aecnn recipe has stages"):
        get_recipe("medianet", stage=1)
    with pytest.raises(ConfigError, match="crop must be >= 1"):
        get_recipe("aecnn", stage=2, crop=0)


def test_plateau_divides_by_ten_after_five_bad_epochs():
    recipe, state = get_recipe("aecnn", stage=1), PlateauState()
    state.update(recipe, 1.0, 1.0)
    for _ in range(5):
        state.update(recipe, 1.0, 1.0)
        assert state.factor == 1.0
    state.update(recipe, 1.0, 1.0)
    assert state.factor == pytest.approx(0.1)


def test_medmnist_plus_normalises_with_each_architectures_own_mean_and_std():
    from canon import models

    for model in ("resnet18", "alexnet", "densenet121"):
        assert get_recipe("medmnist_plus", model=model).normalize == models.IMAGENET
    with pytest.raises(ConfigError, match="give the model"):
        get_recipe("medmnist_plus")
    assert get_recipe("medianet", model="resnet18").normalize is None  # a recipe without normalisation keeps none
    assert get_recipe("medmnist_plus", model="resnet18").seeds == (9930641, 115149041, 252139603)


def test_quirks_are_named_belong_to_their_procedure_and_are_off_by_default():
    assert get_recipe("medmnist_plus", model="resnet18", procedure="linear_probing").quirks == ()
    recipe = get_recipe("medmnist_plus", model="resnet18", procedure="linear_probing",
                        quirks=["linear_probing_train_mode"])
    assert recipe.quirks == ("linear_probing_train_mode",)
    with pytest.raises(ConfigError, match="belongs to the knn procedure"):
        get_recipe("medmnist_plus", model="resnet18", quirks=["knn_auc_zero"])
    with pytest.raises(ConfigError, match="unknown quirk"):
        get_recipe("medmnist_plus", model="resnet18", quirks=["nope"])
    with pytest.raises(ConfigError, match="belong to the medmnist_plus recipe"):
        get_recipe("medianet", quirks=["knn_auc_zero"])
