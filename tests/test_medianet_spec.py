"""MeDiANet's framework-free spec: variants, plan, TF 'same' padding, input-size rules."""

import pytest

from canon import models
from canon.errors import ConfigError
from canon.models.medianet import DiETPlan, ResPlan, check_input_size, mdires_count, stage_plan, tf_same_padding


def test_paper_variants_resolve_to_the_paper_table():
    assert models.resolve("medianet_base69").res_blocks == (1, 1, 1, 2)
    wide117 = models.resolve("medianet_wide117")
    assert (wide117.c_in, wide117.blocks, wide117.res_blocks) == (32, (2, 2, 2, 0), (1, 1, 1, 3))
    custom = models.resolve("medianet", c_in=8, blocks=[0, 1, 0, 0], res_blocks=[1, 1, 1, 1])
    assert custom.blocks == (0, 1, 0, 0)  # lists from JSON become tuples


def test_stage_plan_of_base117():
    plan = stage_plan(models.resolve("medianet_base117"))
    res = [(p.name, p.out_channels, p.stride) for p in plan if isinstance(p, ResPlan)]
    assert res == [("stage1.res0", 16, 1), ("stage2.res0", 32, 2), ("stage3.res0", 64, 2),
                   ("stage4.res0", 128, 2), ("stage4.res1", 128, 1), ("stage4.res2", 256, 1)]
    diets = [(p.name, p.encoder_depth, p.trunk_dilations) for p in plan if isinstance(p, DiETPlan)]
    assert diets[0] == ("stage1.diet0", 3, (4, 8, 12))
    assert [d[0] for d in diets] == ["stage1.diet0", "stage2.diet0", "stage2.diet1",
                                     "stage3.diet0", "stage3.diet1", "stage3.diet2"]
    assert mdires_count(models.resolve("medianet_base117")) == 13 + 2 * 10 + 3 * 7


def test_tf_same_padding_puts_the_odd_pixel_after():
    assert tf_same_padding(224, 7, 2) == (2, 3)   # the stem on 224
    assert tf_same_padding(56, 3, 2) == (0, 1)    # stride-2 3x3 on an even map
    assert tf_same_padding(57, 3, 2) == (1, 1)
    assert tf_same_padding(56, 1, 2) == (0, 0)
    assert tf_same_padding(30, 3, 1, dilation=4) == (4, 4)
    assert tf_same_padding(7, 2, 2) == (0, 1)     # 2x2 'same' pool on an odd map


@pytest.mark.parametrize("option, value, message", [
    ("blocks", (1, 1, 1, 1), "B4 = 0"),
    ("c_in", 18, "multiple of 4"),
    ("head", "dense", "head must be one of"),
    ("activation", "gelu", "activation must be one of"),
    ("mdires_placement", "nowhere", "mdires_placement must be one of"),
    ("res_blocks", (1, 0, 1, 2), "at least one Res block"),
])
def test_bad_options_are_named(option, value, message):
    with pytest.raises(ConfigError, match=message):
        models.resolve("medianet_base69", **{option: value})


def test_input_size_rules_name_the_stage():
    paper, small = models.resolve("medianet_base69"), models.resolve("medianet_base69", head="global")
    check_input_size(224, 224, paper)
    check_input_size(64, 96, small)
    with pytest.raises(ConfigError, match="paper head .* needs 224x224"):
        check_input_size(256, 256, paper)
    with pytest.raises(ConfigError, match="width 80: stage 1 map of 20 is not divisible by 2\\^3"):
        check_input_size(64, 80, small)
