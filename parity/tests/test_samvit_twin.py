"""The SAM ViT image encoder (timm's ``samvit_base_patch16``): its config, plans and resampling
matrices with real values, and the twins through every parity check on a small config.

The small config is timm's ``timm.create_model("samvit_base_patch16", img_size=64, patch_size=8,
embed_dim=32, depth=4, num_heads=2, window_size=3, global_attn_indexes=(1, 3), neck_chans=16,
num_classes=7)`` fed (40, 56) inputs: a 5x7 grid, so every window block pads (to 6x9), the
global blocks resample their 15-row tables to 9 and 13 rows, and pos_embed is resampled 8x8 -> 5x7.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from canon.errors import ConfigError
from canon.models import IMAGENET, mean_std, resolve
from canon.models import samvit
from parity import api
from parity.zoo import DEEP

ROOT = Path(__file__).resolve().parents[2]
NAME = "samvit_base_patch16"
SMALL = dict(img_size=64, input_size=(40, 56), patch_size=8, embed_dim=32, depth=4, num_heads=2, window_size=3,
             global_attn_indexes=(1, 3), neck_channels=16, num_classes=7)
SMALL_SHAPE = (2, 3, 40, 56)
FACTORIES = dict(torch="impl_torch.registry:create_model", keras="impl_tf.registry:create_model")


# -- config and plans ------------------------------------------------------------------------

def test_the_registered_model_is_timms_vit_b():
    config = resolve(NAME)
    assert (config.family, config.embed_dim, config.depth, config.num_heads, config.patch_size) == ("samvit", 768, 12, 12, 16)
    assert (config.window_size, config.global_attn_indexes, config.neck_channels) == (14, (2, 5, 8, 11), 256)
    assert (config.norm_eps, config.neck_eps, config.num_classes) == (1e-5, 1e-6, 0)
    assert config.pretrain_grid == (64, 64) and config.grid == (64, 64)  # fed what it was made for
    assert resolve(NAME, input_size=224).grid == (14, 14)
    assert samvit.parameter_count(config) == 89_670_912  # timm's, no head
    assert samvit.parameter_count(resolve(NAME, num_classes=7)) == 89_670_912 + 256 * 7 + 7
    assert mean_std(NAME) == IMAGENET == samvit.MEAN_STD == ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


def test_block_plan_at_224():
    plan = samvit.block_plan(resolve(NAME, input_size=224))
    assert [b.index for b in plan if b.window == 0] == [2, 5, 8, 11]
    assert {b.table_rows for b in plan if b.window == 0} == {(127, 127)}
    assert {b.table_rows for b in plan if b.window} == {(27, 27)}
    assert {b.attention_size for b in plan} == {(14, 14)}  # one 14x14 window, or the whole 14x14 grid


def test_small_config_pads_windows_and_resamples():
    config = resolve(NAME, **SMALL)
    assert config.grid == (5, 7) and config.pretrain_grid == (8, 8)
    assert [samvit.window_padding(g, 3) for g in config.grid] == [1, 2]
    plan = samvit.block_plan(config)
    assert [(b.window, b.attention_size, b.table_rows) for b in plan] == [
        (3, (3, 3), (5, 5)), (0, (5, 7), (15, 15)), (3, (3, 3), (5, 5)), (0, (5, 7), (15, 15))]
    assert samvit.rel_pos_matrix(15, 5).shape == (9, 15) and samvit.rel_pos_matrix(15, 7).shape == (13, 15)
    assert samvit.rel_pos_matrix(5, 3) is None  # window tables are used as they are
    rows, cols = samvit.pos_embed_matrices(config)
    assert rows.shape == (5, 8) and cols.shape == (7, 8)
    assert samvit.pos_embed_matrices(resolve(NAME, **{**SMALL, "input_size": 64})) is None  # timm skips it too


def test_window_padding_and_relative_index():
    assert [samvit.window_padding(n, 14) for n in (14, 28, 13, 15, 64)] == [0, 0, 1, 13, 6]
    assert samvit.rel_pos_index(3).tolist() == [[2, 1, 0], [3, 2, 1], [4, 3, 2]]


@pytest.mark.parametrize("overrides, message", [
    ({"input_size": (40, 50)}, "divisible by patch_size"),
    ({"img_size": 60}, "img_size .* divisible by patch_size"),
    ({"embed_dim": 33}, "not divisible by num_heads"),
    ({"global_attn_indexes": (1, 4)}, "below depth"),
    ({"global_attn_indexes": (1, 1)}, "distinct"),
    ({"num_classes": -1}, "num_classes"),
    ({"neck_channels": 0}, "neck_channels"),
])
def test_validate_refuses_clearly(overrides, message):
    with pytest.raises(ConfigError, match=message):
        resolve(NAME, **{**SMALL, **overrides})


# -- the interpolation matrices --------------------------------------------------------------

def test_linear_matrix_values():
    # 5 -> 3: source x = (i + 0.5) * 5/3 - 0.5 = 1/3, 2, 11/3
    expected = np.array([[2 / 3, 1 / 3, 0, 0, 0], [0, 0, 1, 0, 0], [0, 0, 0, 1 / 3, 2 / 3]])
    np.testing.assert_allclose(samvit.linear_matrix(5, 3), expected, atol=1e-15)
    np.testing.assert_array_equal(samvit.linear_matrix(4, 4), np.eye(4))
    # upsampling clamps at both ends: the first output sits before pixel 0, the last after pixel 1
    np.testing.assert_allclose(samvit.linear_matrix(2, 4), [[1, 0], [0.75, 0.25], [0.25, 0.75], [0, 1]], atol=1e-15)


def test_bicubic_antialias_matrix_properties():
    matrix = samvit.bicubic_antialias_matrix(64, 14)
    np.testing.assert_allclose(matrix.sum(axis=1), 1.0, atol=1e-15)  # normalised
    assert (np.count_nonzero(matrix, axis=1) <= int(np.ceil(2 * 2 * 64 / 14)) + 1).all()  # support 2*scale each side
    np.testing.assert_allclose(matrix, matrix[::-1, ::-1], atol=1e-15)  # symmetric about the centre
    np.testing.assert_array_equal(samvit.bicubic_antialias_matrix(7, 7), np.eye(7))
    assert matrix[0, 0] == pytest.approx(0.16797829822650273, abs=1e-15)  # torch F.interpolate of a one-hot, float64


_TORCH_SCRIPT = """
import json, numpy as np, torch, torch.nn.functional as F
from canon.models import samvit
rng, worst = np.random.default_rng(0), {"bicubic_aa": 0.0, "linear": 0.0}
for (i, o) in [(64, 14), (8, 5), (8, 7), (5, 8), (64, 13), (10, 3)]:
    x = rng.standard_normal((1, 3, i, i + 2))
    y = F.interpolate(torch.from_numpy(x), size=(o, o + 1), mode="bicubic", antialias=True, align_corners=False).numpy()
    z = np.einsum("hi,wj,ncij->nchw", samvit.bicubic_antialias_matrix(i, o), samvit.bicubic_antialias_matrix(i + 2, o + 1), x)
    worst["bicubic_aa"] = max(worst["bicubic_aa"], float(np.abs(y - z).max()))
for (i, o) in [(127, 27), (15, 9), (15, 13), (27, 127), (3, 10)]:
    x = rng.standard_normal((1, 4, i))
    y = F.interpolate(torch.from_numpy(x), size=o, mode="linear", align_corners=False).numpy()
    worst["linear"] = max(worst["linear"], float(np.abs(np.einsum("oi,nci->nco", samvit.linear_matrix(i, o), x) - y).max()))
print(json.dumps(worst))
"""


def test_matrices_reproduce_torch_interpolate_in_float64():
    """torch's F.interpolate on float64 random tables (its own process: torch only)."""
    result = subprocess.run([sys.executable, "-c", _TORCH_SCRIPT], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    worst = json.loads(result.stdout.strip().splitlines()[-1])
    assert worst["bicubic_aa"] < 1e-13 and worst["linear"] < 1e-13, worst  # float64 round-off (measured <= 2e-14)


# -- the twins -------------------------------------------------------------------------------

@pytest.mark.slow  # the zoo's small case runs the same checks in every suite
def test_small_twins_pass_every_check(twin_workers, tmp_path):
    result = api.check_twins(**FACTORIES, name=NAME, config=SMALL, input_shape=SMALL_SHAPE, onnx=True,
                             determinism=False, runners=twin_workers, report=tmp_path / "r.json", **DEEP)
    assert result.passed, str(result)
    assert {r.check for r in result.results} >= {"contract", "transfer", "layerwise_propagated", "layerwise_isolated",
                                                 "layerwise_float64", "gradients_float64", "gradients", "onnx"}
    record = json.loads((tmp_path / "r.json").read_text())["models"][NAME]
    assert record["contract"]["parameters"] == {"torch": 63_319, "tf": 63_319}
    gradients = {layer["name"] for layer in record["gradients_float64"]["layers"]}
    assert {"grad:pos_embed", "grad:blocks.1.attn.rel_pos_h", "grad:blocks.3.attn.rel_pos_w"} <= gradients


def test_torch_twin_refuses_another_input_size(torch_runner):
    from canon.inputs import parity_input
    from parity.worker import WorkerError

    model = torch_runner.build(FACTORIES["torch"], NAME, SMALL)
    try:
        with pytest.raises(WorkerError, match=r"built for \(40, 56\) inputs"):
            torch_runner.forward(model, parity_input((2, 3, 48, 56)))
    finally:
        torch_runner.free(model)
