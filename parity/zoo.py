"""twinframe's own zoo as parity cases: data only (factory paths are strings, nothing imported).

Inputs follow docs/pitfalls.md (entry 4): batch >= 2, H != W, and channel and class counts
that differ from the spatial sizes, so transposition bugs cannot hide.
"""

from __future__ import annotations

from parity import frameworks
from parity.pair import ParityCase
from canon.tolerances import DTYPE_DEFAULTS, Tolerance, ToleranceSet

ZOO_FACTORIES = frameworks.model_factories()

# Deep networks' float32 checks are norm-wise ("max" mode: the error against the tensor's
# largest magnitude).  Through tens to hundreds of layers, element-wise relative error of
# values near zero measures float32 noise, not semantics: ResNet-34 fails element-wise at
# layer2.2 with a norm-wise error of 1e-6, and even tf against its own ONNX export differs by
# 2.3e-5 element-wise on MeDiANet-wide117.  One layer alone keeps the float32 default (in max
# mode), what accumulates through the network gets 1e-4, and the outputs the acceptance
# bound 1e-5.  Semantics are proved separately, at float64 with the strict float64 default.
# Cases that pass element-wise (VGG, ResUNet, the autoencoder) stay element-wise.
_OUTPUTS = Tolerance(rtol=1e-5, atol=1e-6, mode="max")
NORMWISE = ToleranceSet(default=Tolerance(rtol=1e-4, atol=1e-5, mode="max")).with_override("output:*", _OUTPUTS)
NORMWISE_ISOLATED = ToleranceSet(default=Tolerance(DTYPE_DEFAULTS["float32"].rtol, DTYPE_DEFAULTS["float32"].atol, "max"))
DEEP = dict(tolerances=NORMWISE, isolated_tolerances=NORMWISE_ISOLATED)

# One conv alone sums K = C_in * kh * kw products, and the float32 round-off of such a sum grows
# like sqrt(K) units of round-off (the probabilistic bound), not like a constant: ResNet's
# 256- and 512-channel 3x3 convs (K up to 2304 and 4608) get sqrt(K) * eps where the default is
# 11 eps.  Measured on an AMD EPYC (AVX2): ResNet-34's isolated layer3.3.conv1 differs by
# 1.54e-6 of its largest value (the default allows 1.3e-6), while its float64 layers agree to 5e-13.
FLOAT32_EPS = 2.0**-23


def wide_convs(isolated: ToleranceSet, fan_ins: dict[str, int]) -> ToleranceSet:
    for pattern, fan_in in fan_ins.items():
        isolated = isolated.with_override(pattern, Tolerance(rtol=fan_in**0.5 * FLOAT32_EPS, atol=isolated.default.atol,
                                                             mode="max"))
    return isolated


RESNET = dict(tolerances=NORMWISE, isolated_tolerances=wide_convs(
    NORMWISE_ISOLATED, {"layer3.*.conv?": 256 * 9, "layer4.*.conv?": 512 * 9}))

# MeDiANet (700-1300 layers, activations up to 30-50) adds two rules.  A conv bias that feeds a
# BatchNorm (through dropout or a branch sum at most) has a zero true gradient: BN removes any
# per-channel shift.  Its float32 gradient is round-off (float64 gives ~1e-14), so it is judged
# on the absolute scale of real gradients (up to ~10 here), not against its own noise.  The soft
# mask's 1x1 convs feed a sigmoid and keep the default.  Its logits are head.fc2's output.
_ZERO_TRUE_GRADIENT = Tolerance(rtol=0.0, atol=1e-4, mode="max")
_BIASES_BEFORE_BN = ("grad:stem.conv.bias", "grad:*.conv1.bias", "grad:*.conv2.bias", "grad:*.branch*.conv.bias")
_MEDIANET = NORMWISE
for _pattern in _BIASES_BEFORE_BN:
    _MEDIANET = _MEDIANET.with_override(_pattern, _ZERO_TRUE_GRADIENT)
_MEDIANET = _MEDIANET.with_override("grad:*.mask.conv?.bias", NORMWISE.default).with_override("head.fc2", _OUTPUTS)
MEDIANET_TOLERANCES = dict(tolerances=_MEDIANET, isolated_tolerances=NORMWISE_ISOLATED)

CASES: dict[str, ParityCase] = {
    case.name: case
    for case in (
        # AlexNet flattens a 6x6 map (224..231 px); 224x230 keeps H != W.  The seed's 1 channel, 15 classes.
        ParityCase("alexnet", "alexnet", ZOO_FACTORIES, config={"in_channels": 1, "num_classes": 15, "input_size": (224, 230)},
                   input_shape=(2, 1, 224, 230), **DEEP),
        # 64x96 gives a 2x3 map before the 7x7 adaptive pool: overlapping, repeated torch bins.
        # VGG's 120-140 M parameters (0.5 GB per weights file) make each check take a minute:
        # every VGG's transfer, float64 and full pipeline run in the slow suite, VGG-11's and
        # VGG-16's contract and layer-wise checks in every suite (LAYERS_IN_SLOW_SUITE_ONLY).
        *(ParityCase(f"vgg{d}", f"vgg{d}", ZOO_FACTORIES, config={"num_classes": 15}, input_shape=(2, 3, 64, 96),
                     slow=True)
          for d in (11, 13, 16, 19)),
        # ResNet-18 is judged as its family: on an AMD EPYC (AVX2) 3 of its 10240 layer3.1.add values
        # are 1.24e-5 apart (element-wise atol 1e-5), norm-wise 9.5e-7, in float64 2e-14.
        ParityCase("resnet18", "resnet18", ZOO_FACTORIES, config={"num_classes": 10}, input_shape=(2, 3, 64, 80), **RESNET),
        ParityCase("resnet34", "resnet34", ZOO_FACTORIES, config={"num_classes": 10}, input_shape=(2, 3, 64, 96), **RESNET),
        ParityCase("densenet121", "densenet121", ZOO_FACTORIES, config={"num_classes": 14}, input_shape=(2, 3, 64, 96), **DEEP),
        # stage 2 trains on 128x128 patches; stage 3's 896 input is scaled down to 256x384 (latent 64x96)
        ParityCase("aecnn_autoencoder", "aecnn_autoencoder", ZOO_FACTORIES, input_shape=(2, 1, 128, 160), loss="mse"),
        ParityCase("aecnn", "aecnn", ZOO_FACTORIES, input_shape=(2, 1, 256, 384), loss=("mse", "bce_logits"), **DEEP),
        ParityCase("unet", "unet", ZOO_FACTORIES, input_shape=(2, 3, 32, 48), loss="bce", **DEEP),
        ParityCase("unet_dyt", "unet", ZOO_FACTORIES, config={"norm": "dyt"}, input_shape=(2, 3, 32, 48), loss="bce", **DEEP),
        ParityCase("resunet", "resunet", ZOO_FACTORIES, input_shape=(2, 3, 64, 96), loss="bce"),
        ParityCase("resunet_dyt", "resunet", ZOO_FACTORIES, config={"norm": "dyt"}, input_shape=(2, 3, 64, 96), loss="bce", **DEEP),
        # MeDiANet: the paper head fixes a 224x224 input; the small global-head case keeps H != W.
        # The 117-layer variants repeat the 69s' blocks deeper: their transfer and float64 checks
        # run in the slow suite, their contract and layer-wise checks in every suite.
        *(ParityCase(f"medianet_{v}", f"medianet_{v}", ZOO_FACTORIES, config={"num_classes": 35},
                     input_shape=(2, 3, 224, 224), allow_square_input=True, slow=v.endswith("117"),
                     **MEDIANET_TOLERANCES)
          for v in ("base69", "base117", "wide69", "wide117")),
        ParityCase("medianet_base69_global", "medianet_base69", ZOO_FACTORIES,
                   config={"num_classes": 7, "head": "global"}, input_shape=(2, 3, 64, 96), **MEDIANET_TOLERANCES),
        # MedMNIST+'s timm families: each at a small config in every suite (odd maps through the
        # stride-2 convs: 40x72 -> 20x36 ... 2x3, so the symmetric padding meets odd sizes) and at
        # its paper size in the full-size tier (`make test-full-size`).  B0 at 0.25 width / 0.5 depth keeps two blocks per stage.
        ParityCase("efficientnet_small", "efficientnet_b0", ZOO_FACTORIES,
                   config={"channel_multiplier": 0.25, "depth_multiplier": 0.5, "num_classes": 7},
                   input_shape=(2, 3, 40, 72), **DEEP),
        ParityCase("efficientnet_b4", "efficientnet_b4", ZOO_FACTORIES, config={"num_classes": 9},
                   input_shape=(2, 3, 224, 224), allow_square_input=True, slow=True, full_size=True, **DEEP),
        # The ViT-B/16s and EVA-02 at 4x6 patches of 8 px, width 32, two blocks (augreg, DINO, CLIP,
        # EVA-02: their semantics differ in norms, biases, pooling and RoPE, not in depth); each at
        # 224 in the full-size tier.  A worker above 2 GB is restarted between cases (TWINFRAME_RECYCLE_GB).
        *(ParityCase(case, model, ZOO_FACTORIES,
                     config={"img_size": (32, 48), "patch_size": 8, "embed_dim": 32, "depth": 2, "num_heads": 2,
                             "num_classes": 7},
                     input_shape=(2, 3, 32, 48), **DEEP)
          for case, model in (("vit_small", "vit_base_patch16_224"), ("vit_dino_small", "vit_base_patch16_224.dino"),
                              ("vit_clip_small", "vit_base_patch16_clip_224"),
                              ("eva02_small", "eva02_base_patch16_clip_224"))),
        # (the DINO ViT is the augreg network with other weights and mean/std: at full size it would
        # repeat vit_base_patch16_224's case exactly; its small case and timm layout stay)
        *(ParityCase(model, model, ZOO_FACTORIES, config={"num_classes": 9}, input_shape=(2, 3, 224, 224),
                     allow_square_input=True, slow=True, full_size=True, **DEEP)
          for model in ("vit_base_patch16_224", "vit_base_patch16_clip_224", "eva02_base_patch16_clip_224")),
        # SAM's encoder made for 64 px, fed 40x56: a 5x7 grid, windows of 3 padded to 6x9, pos_embed
        # resampled 8x8 -> 5x7 and the global blocks' tables 15 -> 9 and 13 rows, as at 1024 -> 224.
        ParityCase("samvit_small", "samvit_base_patch16", ZOO_FACTORIES,
                   config={"img_size": 64, "input_size": (40, 56), "patch_size": 8, "embed_dim": 32, "depth": 4,
                           "num_heads": 2, "window_size": 3, "global_attn_indexes": (1, 3), "neck_channels": 16,
                           "num_classes": 7},
                   input_shape=(2, 3, 40, 56), **DEEP),
        ParityCase("samvit_base_patch16", "samvit_base_patch16", ZOO_FACTORIES,
                   config={"input_size": (224, 224), "num_classes": 9}, input_shape=(2, 3, 224, 224),
                   allow_square_input=True, slow=True, full_size=True, **DEEP),
    )
}


# The cases whose full pipeline (ONNX, float32 gradients, determinism) `make test` runs; every
# other case's contract, layer-wise and float64 checks run there too (a slow case's contract and
# layer-wise only), the rest in `make test-slow`.
# ResNet-18: the torchvision family, cross-entropy; the AECNN autoencoder: PixelShuffle, ELU, mse;
# each timm family of MedMNIST+ at its small configuration (the DINO and CLIP ViTs: the slow tier).
EVERY_SUITE_PIPELINES = ("resnet18", "aecnn_autoencoder", "efficientnet_small", "samvit_small", "vit_small",
                         "eva02_small")
# Slow cases whose contract and layer-wise checks run only with the rest of their checks, in the
# slow suite: VGG-13 and VGG-19 (VGG-11 and VGG-16 stand for the family in every suite).
LAYERS_IN_SLOW_SUITE_ONLY = ("vgg13", "vgg19")


def get_case(name: str) -> ParityCase:
    try:
        return CASES[name]
    except KeyError:
        raise KeyError(f"no parity case {name!r}; known cases: {', '.join(sorted(CASES))}") from None
