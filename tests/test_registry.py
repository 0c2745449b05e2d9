import json
import subprocess
import sys

import pytest

from canon import models
from canon.errors import ConfigError, UnknownModelError
from canon.models.resnet import block_plan


def test_unknown_model_lists_the_known_ones():
    with pytest.raises(UnknownModelError, match="unknown model .resnet19.; known models: aecnn, aecnn_autoencoder, alexnet, .*resnet18, resnet34, resunet, .*vgg11"):
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


# Model names without a parity case of their own, each with the reason.
NO_PARITY_CASE = {
    **{f"efficientnet_b{i}": "the EfficientNet builder with other width/depth multipliers; B0 (small) and B4 are "
                             "cases, and every variant's parameter count is checked against timm's"
       for i in (1, 2, 3, 5, 6, 7)},
    "medianet": "the free-form config (any c_in, blocks, res_blocks); its builder is the one the four "
                "named paper variants use, and each of those is a case",
}


def _registered_families(package: str) -> set[str]:
    """A twin's registered families, read in a process of its own (never both frameworks in one)."""
    code = f"import json, {package}.registry as r; print(json.dumps(r.families()))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{package} failed to import:\n{done.stderr[-2000:]}"
    return set(json.loads(done.stdout.strip().splitlines()[-1]))


@pytest.mark.parametrize("package", [pytest.param("impl_torch", marks=pytest.mark.torch),
                                     pytest.param("impl_tf", marks=pytest.mark.tf)])
def test_every_spec_model_has_a_builder_in_this_twin(package):
    registered = _registered_families(package)
    needed = {name: models.resolve(name).family for name in models.list_models()}
    missing = sorted(f"{name} (family {family})" for name, family in needed.items() if family not in registered)
    assert not missing, f"{package} has no builder for: {', '.join(missing)}"
    assert registered - set(needed.values()) == set(), f"{package} builds families no canon model names"


def test_every_spec_model_has_a_parity_case_or_a_reasoned_exemption():
    from parity import zoo

    with_case = {case.model for case in zoo.CASES.values()}
    uncovered = sorted(set(models.list_models()) - with_case - set(NO_PARITY_CASE))
    assert not uncovered, f"canon models without a parity case (add one to parity/zoo.py): {uncovered}"
    stale = sorted(set(NO_PARITY_CASE) & with_case)
    assert not stale, f"exempt models that now have a case: {stale}"
    assert set(NO_PARITY_CASE) <= set(models.list_models())


def test_a_name_registered_twice_is_refused():
    with pytest.raises(ValueError, match="model 'resnet18' is registered twice"):
        models.register_models({"resnet18": {}})(type("Another", (), {}))


def test_a_twin_without_a_builder_for_a_family_names_it_and_the_way_out():
    builders = models.Builders("Mine")
    builders.register("vgg")(lambda config: ("vgg", config.depth))
    assert builders.build("vgg13") == ("vgg", 13) and builders.families() == ["vgg"]
    with pytest.raises(UnknownModelError, match=r"model 'resnet18' \(family 'resnet'\) has no Mine builder; "
                                                r"register one with @register_family\('resnet'\)"):
        builders.build("resnet18")
    with pytest.raises(ValueError, match="family 'vgg' has two Mine builders"):
        builders.register("vgg")(lambda config: None)
