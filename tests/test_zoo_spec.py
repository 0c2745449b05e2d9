"""The zoo's framework-free specs: plans, sizes and torch's adaptive-pool bins."""

import math

import pytest
from hypothesis import given, strategies as st

from canon import models
from canon.errors import ConfigError
from canon.models import alexnet, densenet, unet, vgg


def test_every_zoo_model_resolves_with_its_family():
    families = {name: models.resolve(name).family for name in models.list_models()}
    assert families["alexnet"] == "alexnet" and families["densenet121"] == "densenet"
    assert {families[f"vgg{d}"] for d in (11, 13, 16, 19)} == {"vgg"}
    assert (families["unet"], families["resunet"], families["aecnn"]) == ("unet", "resunet", "aecnn")
    assert models.resolve("aecnn_autoencoder").stage == "autoencoder" and models.resolve("aecnn").stage == "joint"


def test_vgg_plans_have_the_published_depths():
    for depth, plan in vgg.PLANS.items():
        convs = sum(1 for item in plan if item != "M")
        assert convs + 3 == depth and plan.count("M") == 5
    layers = vgg.feature_layers(models.resolve("vgg11"))
    assert layers[:3] == [("conv", 64), ("relu", 0), ("maxpool", 0)] and len(layers) == 21  # torchvision's features.20


@given(st.integers(1, 300), st.integers(1, 12))
def test_adaptive_pool_bins_follow_torchs_floor_ceil_rule(in_size, out_size):
    bins = vgg.adaptive_pool_bins(in_size, out_size)
    assert len(bins) == out_size
    for i, (start, end) in enumerate(bins):
        assert start == math.floor(i * in_size / out_size) and end == math.ceil((i + 1) * in_size / out_size)
        assert 0 <= start < end <= in_size
    assert bins[0][0] == 0 and bins[-1][1] == in_size
    assert all(b[0] <= a[1] for a, b in zip(bins, bins[1:]))  # they cover the axis: no gap between bins


def test_adaptive_pool_bins_overlap_when_sizes_do_not_divide():
    assert vgg.adaptive_pool_bins(14, 7) == [(2 * i, 2 * i + 2) for i in range(7)]
    assert vgg.adaptive_pool_bins(9, 7)[3] == (3, 6)  # a 3-wide bin overlapping its neighbours
    assert vgg.adaptive_pool_bins(2, 7)[3] == (0, 2)


def test_alexnet_needs_a_six_pixel_feature_map():
    assert [s for s in range(200, 260) if alexnet.feature_map_size(s) == 6] == list(range(223, 255))
    alexnet.check_input_size(224, 230)
    with pytest.raises(ConfigError, match="alexnet input width 96 gives a 2-pixel feature map"):
        alexnet.check_input_size(224, 96)
    with pytest.raises(ConfigError, match="input height 64"):
        models.resolve("alexnet", input_size=(64, 224))


def test_densenet121_plan_is_torchvisions():
    config = models.resolve("densenet121")
    plan = densenet.block_plan(config)
    assert [(p.num_layers, p.in_channels, p.transition_out) for p in plan] == [
        (6, 64, 128), (12, 128, 256), (24, 256, 512), (16, 512, None)]
    assert densenet.num_features(config) == 1024 and densenet.BN_EPSILON == 1e-5


def test_segmentation_options_and_sizes_are_checked():
    assert unet.NORMS == ("batch", "none", "dyt")
    with pytest.raises(ConfigError, match="unet norm must be one of"):
        models.resolve("unet", norm="layer")
    unet.check_input_size(32, 48, models.resolve("unet"))
    with pytest.raises(ConfigError, match="unet input width 40 is not a multiple of 16"):
        unet.check_input_size(32, 40, models.resolve("unet"))
    with pytest.raises(ConfigError, match="resunet input height 48 is not a multiple of 32"):
        unet.check_input_size(48, 64, models.resolve("resunet"))


def test_aecnn_sizes_and_classifier():
    config = models.resolve("aecnn")
    assert config.classifier() == models.resolve("densenet121", in_channels=3, num_classes=14)
    with pytest.raises(ConfigError, match="aecnn input height 250 is not a multiple of 4"):
        from canon.models.aecnn import check_input_size
        check_input_size(250, 256)
