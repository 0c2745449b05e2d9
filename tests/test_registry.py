import pytest

from spec import models
from spec.errors import ConfigError, UnknownModelError
from spec.models.resnet import block_plan


def test_unknown_model_lists_the_known_ones():
    with pytest.raises(UnknownModelError, match="unknown model .resnet19.; known models: aecnn, aecnn_autoencoder, alexnet, .*resnet18, resnet34, resunet, unet, vgg11"):
        models.resolve("resnet19")


def test_unknown_and_invalid_options_are_named():
    with pytest.raises(ConfigError, match=r"no option\(s\) \['classes'\]"):
        models.resolve("resnet18", classes=3)
    with pytest.raises(ConfigError, match="num_classes must be >= 1"):
        models.resolve("resnet18", num_classes=0)


def test_resnet_block_plans_follow_torchvision():
    plan18 = block_plan(models.resolve("resnet18"))
    assert [b.name for b in plan18][:3] == ["layer1.0", "layer1.1", "layer2.0"]
    assert [(b.stride, b.has_downsample) for b in plan18 if b.name.endswith(".0")] == [
        (1, False), (2, True), (2, True), (2, True)]
    assert len(block_plan(models.resolve("resnet34"))) == 16
