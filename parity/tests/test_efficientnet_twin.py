"""EfficientNet-B0..B7 (timm semantics): the canon table and plan against timm's facts, the twins'
names and shapes against timm's efficientnet_b0/b4 state_dicts, and check_twins on a small config.

The timm facts (timm 1.0.22): the per-variant multipliers of timm/models/efficientnet.py, the
parameter counts of ``timm.create_model(name)`` at 1000 classes, and a SHA-256 of each state_dict's
sorted ``"key (shape)"`` lines (num_batches_tracked aside), taken from timm itself."""

from __future__ import annotations

import re

import pytest

from parity.tests.timm_twins import KERAS, TORCH, check_pair, layout_digest
from canon.errors import ConfigError
from canon.models import resolve
from canon.models.efficientnet import B0_STAGES, StageSpec, block_plan, head_channels, make_divisible, stem_channels

# depth 0.5 gives two-block stages (the IR skip); 40x72 gives odd maps (5x9 -> 3x5 -> 2x3) at stride 2
SMALL = dict(channel_multiplier=0.25, depth_multiplier=0.5, num_classes=7)
SMALL_INPUT = (2, 3, 40, 72)

TIMM_PARAMETERS = {"efficientnet_b0": 5_288_548, "efficientnet_b1": 7_794_184, "efficientnet_b2": 9_109_994,
                   "efficientnet_b3": 12_233_232, "efficientnet_b4": 19_341_616, "efficientnet_b5": 30_389_784,
                   "efficientnet_b6": 43_040_704, "efficientnet_b7": 66_347_960}
TIMM_STATE_DIGEST = {
    "efficientnet_b0": (311, "f62a5c98a74c6670c0b93b6573d4faf0e845eb27ef2778aeb66f85f8e7a827e5"),
    "efficientnet_b4": (610, "679b39921bba607b3eb08c215d679456aca65ddeb5252dc004e8481f8545cd57"),
}
TIMM_ARCH_DEF = ("ds_r1_k3_s1_e1_c16_se0.25", "ir_r2_k3_s2_e6_c24_se0.25", "ir_r2_k5_s2_e6_c40_se0.25",
                 "ir_r3_k3_s2_e6_c80_se0.25", "ir_r3_k5_s1_e6_c112_se0.25", "ir_r4_k5_s2_e6_c192_se0.25",
                 "ir_r1_k3_s1_e6_c320_se0.25")


def _decode(block_string: str) -> StageSpec:
    block, *options = block_string.split("_")
    values = dict(re.fullmatch(r"([a-z]+)([\d.]+)", option).groups() for option in options)  # "se0.25" -> se: 0.25
    return StageSpec(block, int(values["r"]), int(values["k"]), int(values["s"]), int(values["e"]), int(values["c"]),
                     float(values["se"]))


def _parameters(config) -> int:
    """The trainable parameters from the plan alone (BN: weight and bias)."""
    stem, head = stem_channels(config), head_channels(config)
    total = config.in_channels * stem * 9 + 2 * stem
    for stage in block_plan(config):
        for p in stage:
            se = 2 * p.mid_channels * p.se_channels + p.mid_channels + p.se_channels
            expand = p.in_channels * p.mid_channels + 2 * p.mid_channels if p.block == "ir" else 0
            total += expand + p.mid_channels * p.kernel**2 + 2 * p.mid_channels + se
            total += p.mid_channels * p.out_channels + 2 * p.out_channels
    last = block_plan(config)[-1][-1].out_channels
    return total + last * head + 2 * head + (head + 1) * config.num_classes


# -- framework-free: the table, the rounding, the plan -------------------------------------

def test_b0_table_is_timms_block_strings():
    assert tuple(_decode(s) for s in TIMM_ARCH_DEF) == B0_STAGES


def test_variants_have_timms_multipliers():
    expected = {0: (1.0, 1.0), 1: (1.0, 1.1), 2: (1.1, 1.2), 3: (1.2, 1.4), 4: (1.4, 1.8), 5: (1.6, 2.2),
                6: (1.8, 2.6), 7: (2.0, 3.1)}
    for b, multipliers in expected.items():
        config = resolve(f"efficientnet_b{b}")
        assert (config.channel_multiplier, config.depth_multiplier) == multipliers
        assert (config.in_channels, config.num_classes, config.drop_path_rate, config.family) == (3, 1000, 0.0, "efficientnet")


def test_channel_rounding():
    assert make_divisible(32 * 1.4) == 48 and make_divisible(16 * 1.4) == 24 and make_divisible(1280 * 1.4) == 1792
    assert make_divisible(4) == 8  # never below the divisor
    assert make_divisible(10) == 16  # 8 would lose more than 10%
    assert make_divisible(12) == 16 and make_divisible(11.9) == 16  # 8 < 0.9 * 11.9: one step up
    assert make_divisible(20 * 1.1) == 24 and make_divisible(40 * 1.1) == 48  # B2


def test_b4_plan():
    config = resolve("efficientnet_b4")
    stages = block_plan(config)
    assert stem_channels(config) == 48 and head_channels(config) == 1792
    assert [s[0].out_channels for s in stages] == [24, 32, 56, 112, 160, 272, 448]
    assert [len(s) for s in stages] == [2, 4, 4, 6, 6, 8, 2]
    first, second = stages[0]
    assert (first.block, first.in_channels, first.mid_channels, first.out_channels, first.se_channels, first.has_skip) == \
        ("ds", 48, 48, 24, 12, False)
    assert (second.in_channels, second.se_channels, second.has_skip) == (24, 6, True)
    ir = stages[1][0]  # SE width from the block input (24 * 0.25), not the expanded 144
    assert (ir.name, ir.in_channels, ir.mid_channels, ir.se_channels, ir.stride, ir.padding, ir.has_skip) == \
        ("blocks.1.0", 24, 144, 6, 2, 1, False)
    assert [(p.kernel, p.padding, p.stride) for p in (stages[2][0], stages[2][1])] == [(5, 2, 2), (5, 2, 1)]
    assert stages[2][1].has_skip and not stages[4][0].has_skip  # stage 4 keeps stride 1 but widens
    assert _parameters(config) == TIMM_PARAMETERS["efficientnet_b4"]


def test_every_variant_counts_timms_parameters():
    for name, count in TIMM_PARAMETERS.items():
        assert _parameters(resolve(name)) == count, name


def test_small_plan():
    config = resolve("efficientnet_b0", **SMALL)
    stages = block_plan(config)
    assert stem_channels(config) == 8 and head_channels(config) == 320
    assert [s[0].out_channels for s in stages] == [8, 8, 16, 24, 32, 48, 80]
    assert [len(s) for s in stages] == [1, 1, 1, 2, 2, 2, 1]
    assert [p.name for stage in stages for p in stage if p.has_skip] == ["blocks.0.0", "blocks.3.1", "blocks.4.1",
                                                                          "blocks.5.1"]


@pytest.mark.parametrize("bad", [{"drop_path_rate": 0.2}, {"channel_multiplier": 0}, {"depth_multiplier": -1.0},
                                 {"num_classes": 0}, {"in_channels": 0}])
def test_bad_configs_are_refused(bad):
    with pytest.raises(ConfigError, match=next(iter(bad))):
        resolve("efficientnet_b4", **bad)


# -- the twins' names and shapes against timm's ------------------------------------------

@pytest.mark.parametrize("name", sorted(TIMM_STATE_DIGEST))
def test_state_dict_is_timms(torch_runner, tf_runner, name):
    keys, digest = TIMM_STATE_DIGEST[name]
    for runner in (torch_runner, tf_runner):
        model = runner.build(TORCH if runner is torch_runner else KERAS, name)
        try:
            assert (len(model.weights), layout_digest(model.weights)) == (keys, digest), runner.framework
            assert model.parameters == TIMM_PARAMETERS[name], runner.framework  # trainable: BN statistics aside
        finally:
            runner.free(model)


# -- the pair --------------------------------------------------------------------------------

@pytest.mark.slow  # the zoo's small case runs the same checks in every suite
def test_small_efficientnet_is_twins(twin_workers):
    result = check_pair(twin_workers, "efficientnet_b0", SMALL, SMALL_INPUT)
    compared = result.coverage["compared"]
    assert compared == 150  # every conv, BN, activation (bn*.act, se.act1, se.gate), SE pool and product, add
