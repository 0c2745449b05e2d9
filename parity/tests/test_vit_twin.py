"""ViT (augreg, CLIP, DINO) and EVA-02 (timm semantics): the canon configs, token geometry and RoPE
table against timm's facts, the twins' names and shapes against timm's state_dicts, and
check_twins on a small non-square config of each model.

The timm facts (timm 1.0.22, torch 2.14 CPU): parameter counts of ``timm.create_model(name,
**kwargs)``, a SHA-256 of each state_dict's sorted ``"key (shape)"`` lines, and values of EVA's
``rope.pos_embed`` buffer (float32, as ``float.hex``), all taken from timm itself.  The DINO
model is built with ``num_classes=1000`` (timm's own default for that tag is 0: no head)."""

from __future__ import annotations


import numpy as np
import pytest

from parity.tests.timm_twins import KERAS, TORCH, check_pair, layout_digest
from canon.errors import ConfigError
from canon.models import IMAGENET, INCEPTION, OPENAI_CLIP, mean_std, resolve
from canon.models.eva import rope_angles, rope_table
from canon.models.vit import grid_size, has_patch_bias, head_dim, mlp_hidden, num_tokens, uses_fc_norm

VIT_NAMES = ("vit_base_patch16_224", "vit_base_patch16_224.dino", "vit_base_patch16_clip_224")
EVA = "eva02_base_patch16_clip_224"
NAMES = (*VIT_NAMES, EVA)
# H != W (a 4 x 6 patch grid: 25 tokens with the class token), two heads, classes unlike any size
SMALL = dict(img_size=(32, 48), patch_size=8, embed_dim=32, depth=2, num_heads=2, num_classes=7)
SMALL_INPUT = (2, 3, 32, 48)

# name -> (state_dict entries, parameters, digest), at timm's full size and at SMALL
TIMM_FULL = {
    "vit_base_patch16_224": (152, 86_567_656, "6e116342a243f50b6ae4fe04ca713d19065b966086ee767f101828f8fe186bea"),
    "vit_base_patch16_224.dino": (152, 86_567_656, "6e116342a243f50b6ae4fe04ca713d19065b966086ee767f101828f8fe186bea"),
    "vit_base_patch16_clip_224": (153, 86_568_424, "17ef5a1357f2f9a40c4d5e42d2a02ec8f0a3719ccbcd843de857c9821b80f7fd"),
    EVA: (260, 86_263_040, "027f62fe6f101bdbf3042296e26e3fd98de643b26841d07d085ab698848cb82b"),
}
TIMM_SMALL = {
    "vit_base_patch16_224": (32, 32_711, "969f13cc3689da067a26eca2ede8874a91f761b4296c7e7a575016056d382c14"),
    "vit_base_patch16_224.dino": (32, 32_711, "969f13cc3689da067a26eca2ede8874a91f761b4296c7e7a575016056d382c14"),
    "vit_base_patch16_clip_224": (33, 32_743, "7c5a6586966647758ff221734df00894a49a3c559e2740dd6e871436eeb2b008"),
    EVA: (50, 33_135, "bd2abe1ee69744a527ada8f803a3df5d5894493ef5a2ed1b4b2cc2db0908ad95"),
}
# timm's rope.pos_embed = [sin | cos], (patches, 2 * head_dim): (row, column, value, equal to ours in float32)
TIMM_ROPE = {
    "full": ({}, (196, 128), [(0, 0, "0x0.0p+0", True), (0, 64, "0x1.0p+0", True), (195, 1, "0x1.80eeccp-1", True),
                               (195, 63, "0x1.5a4b36p-9", True), (65, 34, "-0x1.ea2018p-2", True),
                               (1, 36, "0x1.6a12bep-2", False), (1, 116, "0x1.ffff26p-1", False)]),
    "small": (SMALL, (24, 32), [(0, 0, "0x0.0p+0", True), (23, 1, "-0x1.12b9b0p-1", True),
                                (23, 15, "0x1.b4e4ccp-7", True), (8, 10, "0x1.044ddep-1", True),
                                (2, 26, "0x1.b8e458p-1", False), (3, 28, "0x1.fe5ccap-1", False)]),
}


def _parameters(config) -> int:
    """The parameters from the config alone, block by block as timm lays them out."""
    d, hidden, (ph, pw) = config.embed_dim, mlp_hidden(config), np.broadcast_to(config.patch_size, 2)
    total = config.in_channels * ph * pw * d + (d if has_patch_bias(config) else 0)
    total += num_tokens(config) * d + (d if config.class_token else 0) + (2 * d if config.pre_norm else 0)
    linear = lambda i, o, bias=True: i * o + (o if bias else 0)  # noqa: E731
    if config.family == "vit":
        block = 4 * d + linear(d, 3 * d, config.qkv_bias) + linear(d, d) + linear(d, hidden) + linear(hidden, d)
    else:  # q, k (no bias), v, attn.norm, proj; fc1_g, fc1_x, mlp.norm, fc2
        block = (4 * d + linear(d, d, config.qkv_bias) + linear(d, d, False) + linear(d, d, config.qkv_bias) + 2 * d
                 + linear(d, d) + 2 * linear(d, hidden) + 2 * hidden + linear(hidden, d))
    return total + config.depth * block + 2 * d + linear(d, config.num_classes)


# -- framework-free: the registered configs ---------------------------------------------------

def test_registered_variants():
    augreg, dino, clip, eva = (resolve(name) for name in NAMES)
    assert dino == augreg and augreg.family == "vit" and eva.family == "eva"
    assert (augreg.norm_eps, has_patch_bias(augreg), augreg.pre_norm, augreg.num_classes) == (1e-6, True, False, 1000)
    assert (clip.norm_eps, has_patch_bias(clip), clip.pre_norm, clip.num_classes) == (1e-5, False, True, 1000)
    assert (eva.norm_eps, has_patch_bias(eva), eva.pre_norm, eva.num_classes) == (1e-6, True, False, 512)
    assert (eva.mlp_ratio, eva.rope_ref_grid, eva.rope_temperature) == (4 * 2 / 3, (16, 16), 10000.0)
    for config in (augreg, clip, eva):  # every one pools the class token; no fc_norm
        assert (config.global_pool, uses_fc_norm(config), config.class_token, config.qkv_bias) == \
            ("token", False, True, True)
        assert (config.embed_dim, config.depth, config.num_heads, config.patch_size, config.img_size) == \
            (768, 12, 12, 16, 224)


def test_mean_std_per_model():
    assert mean_std("vit_base_patch16_224") == INCEPTION == ((0.5,) * 3, (0.5,) * 3)
    assert mean_std("vit_base_patch16_224.dino") == IMAGENET
    assert mean_std("vit_base_patch16_clip_224") == mean_std(EVA) == OPENAI_CLIP
    assert OPENAI_CLIP == ((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711))


def test_token_geometry():
    vit, eva = resolve("vit_base_patch16_224"), resolve(EVA)
    assert (grid_size(vit), num_tokens(vit), head_dim(vit), mlp_hidden(vit)) == ((14, 14), 197, 64, 3072)
    assert (grid_size(eva), num_tokens(eva), mlp_hidden(eva)) == ((14, 14), 197, 2048)  # int(768 * 8 / 3)
    small = resolve("vit_base_patch16_224", **SMALL)
    assert (grid_size(small), num_tokens(small), head_dim(small), mlp_hidden(small)) == ((4, 6), 25, 16, 128)
    assert mlp_hidden(resolve(EVA, **SMALL)) == 85  # timm's int(32 * 8 / 3), not rounded up
    assert num_tokens(resolve("vit_base_patch16_224", **SMALL, class_token=False, global_pool="avg")) == 24
    assert grid_size(resolve("vit_base_patch16_224", img_size=(40, 60), patch_size=(8, 16))) == (5, 3)


def test_parameter_counts_are_timms():
    for name in NAMES:
        assert _parameters(resolve(name)) == TIMM_FULL[name][1], name
        assert _parameters(resolve(name, **SMALL)) == TIMM_SMALL[name][1], name


def test_avg_pool_moves_the_final_norm():
    config = resolve("vit_base_patch16_224", global_pool="avg")
    assert uses_fc_norm(config) and not uses_fc_norm(resolve("vit_base_patch16_224", global_pool="avg", fc_norm=False))
    assert has_patch_bias(resolve("vit_base_patch16_224", pre_norm=True)) is False  # timm: bias=not pre_norm
    assert has_patch_bias(resolve("vit_base_patch16_clip_224", patch_bias=True)) is True


@pytest.mark.parametrize("name, bad, match", [
    ("vit_base_patch16_224", {"num_classes": 0}, "num_classes"),
    ("vit_base_patch16_224", {"embed_dim": 30, "num_heads": 4}, "divisible"),
    ("vit_base_patch16_224", {"img_size": 8, "patch_size": 16}, "at least patch_size"),
    ("vit_base_patch16_224", {"img_size": (32, 48, 3)}, "img_size"),
    ("vit_base_patch16_224", {"global_pool": "max"}, "global_pool"),
    ("vit_base_patch16_224", {"class_token": False}, "class_token"),
    ("vit_base_patch16_224", {"norm_eps": 0.0}, "norm_eps"),
    (EVA, {"embed_dim": 24, "num_heads": 4}, "multiple of 4"),
    (EVA, {"rope_ref_grid": (16,)}, "rope_ref_grid"),
    (EVA, {"depth": 0}, "depth"),
])
def test_bad_configs_are_refused(name, bad, match):
    with pytest.raises(ConfigError, match=match):
        resolve(name, **bad)


# -- framework-free: EVA's rotary table -----------------------------------------------------

def test_rope_angles_follow_timms_recipe():
    config = resolve(EVA, **SMALL)  # head_dim 16: 4 bands per axis; grid 4 x 6 scaled to 16 x 16
    angles = rope_angles(config)
    assert angles.dtype == np.float32 and angles.shape == (24, 8)
    bands = np.float32(1) / np.float32([10000.0 ** (i / 4) for i in range(4)])
    rows, cols = np.arange(4, dtype=np.float32) / 4 * 16, np.arange(6, dtype=np.float32) / 6 * 16
    r, c = 2, 5  # patch (2, 5) is token 2 * 6 + 5 (row-major, meshgrid 'ij')
    np.testing.assert_array_equal(angles[r * 6 + c], np.concatenate([rows[r] * bands, cols[c] * bands]))
    unscaled = rope_angles(resolve(EVA, **SMALL, rope_ref_grid=None))
    np.testing.assert_array_equal(unscaled[r * 6 + c], np.concatenate([r * bands, c * bands]).astype(np.float32))


def test_rope_table_is_interleaved_pairs():
    sin, cos = rope_table(resolve(EVA))
    assert sin.dtype == cos.dtype == np.float64 and sin.shape == cos.shape == (196, 64)
    np.testing.assert_array_equal(sin[:, 0::2], sin[:, 1::2])  # each angle twice: (x0, x1), (x2, x3), ...
    np.testing.assert_allclose(sin**2 + cos**2, 1.0, rtol=0, atol=1e-15)
    np.testing.assert_array_equal(sin[0], 0.0)  # patch (0, 0): every angle 0


@pytest.mark.parametrize("size", sorted(TIMM_ROPE))
def test_rope_table_is_timms_within_one_ulp(size):
    config, shape, values = TIMM_ROPE[size]
    sin, cos = rope_table(resolve(EVA, **config))
    ours = np.concatenate([sin, cos], axis=-1).astype(np.float32)
    assert ours.shape == shape
    for row, column, value, equal in values:
        theirs = np.float32(float.fromhex(value))
        ulps = abs(int(ours[row, column].view(np.int32)) - int(theirs.view(np.int32)))
        assert ulps == (0 if equal else 1), (row, column, ours[row, column], theirs)


# -- the twins' names and shapes against timm's ------------------------------------------------

def _assert_timms(runners, name: str, config: dict, expected: tuple) -> None:
    entries, parameters, digest = expected
    for factory, runner in ((TORCH, runners["torch"]), (KERAS, runners["tf"])):
        model = runner.build(factory, name, config)
        try:
            assert (len(model.weights), layout_digest(model.weights)) == (entries, digest), runner.framework
            assert model.parameters == parameters, runner.framework
        finally:
            runner.free(model)


@pytest.mark.parametrize("name", NAMES)
def test_small_state_dict_is_timms(runners, name):
    _assert_timms(runners, name, SMALL, TIMM_SMALL[name])


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_full_state_dict_is_timms(runners, name):
    _assert_timms(runners, name, {}, TIMM_FULL[name])


# -- the pairs -------------------------------------------------------------------------------

# per block: norm1, attn (+ qkv, proj | q/k/v_proj, norm, proj), norm2, mlp (+ fc1, act, fc2 | fc1_g,
# fc1_x, act, norm, fc2), the block; besides: patch_embed (+ proj), pos_drop, [norm_pre], norm, head
COMPARED = {"vit_base_patch16_224": 5 + 2 * 10, "vit_base_patch16_224.dino": 5 + 2 * 10,
            "vit_base_patch16_clip_224": 6 + 2 * 10, EVA: 5 + 2 * 15}


@pytest.mark.slow  # the zoo's small case runs the same checks in every suite
@pytest.mark.parametrize("name", NAMES)
def test_small_twins(twin_workers, name):
    result = check_pair(twin_workers, name, SMALL, SMALL_INPUT)
    assert result.coverage["compared"] == COMPARED[name]


@pytest.mark.slow  # options no MedMNIST+ model uses
@pytest.mark.parametrize("name, variant", [
    ("vit_base_patch16_224", {"class_token": False, "global_pool": "avg", "qkv_bias": False}),  # fc_norm, no norm
    (EVA, {"global_pool": "avg", "pre_norm": True, "rope_ref_grid": None}),  # fc_norm, norm_pre, unscaled RoPE grid
])
def test_small_variants_are_twins(twin_workers, name, variant):
    check_pair(twin_workers, name, {**SMALL, **variant}, SMALL_INPUT)
