"""twinframe's own zoo as parity cases: data only (factory paths are strings, nothing imported).

Inputs follow spec/numerics.md: batch >= 2, H != W, and channel and class counts
that differ from the spatial sizes, so transposition bugs cannot hide.
"""

from __future__ import annotations

from parity.checks import ParityCase
from spec.tolerances import DTYPE_DEFAULTS, Tolerance, ToleranceSet

ZOO_FACTORIES = {"torch": "impl_torch:create_model", "tf": "impl_tf:create_model"}

# MeDiANet runs 700-1300 layers whose activations reach 30-50, and float32 round-off grows
# with depth and with operand size (even tf against its own ONNX export differs by 2.3e-5
# element-wise on wide117).  Its float32 checks are therefore norm-wise ("max" mode: error
# against the tensor's largest magnitude): the float32 default for one layer alone, 1e-4 for
# what accumulates through the network, and the acceptance bound 1e-5 for the logits.
# Semantics are proved separately, at float64 with the strict float64 default, on every case.
_LOGITS = Tolerance(rtol=1e-5, atol=1e-6, mode="max")
# A conv bias that feeds a BatchNorm (through dropout or a branch sum at most) has a zero true
# gradient: BN removes any per-channel shift.  Its float32 gradient is round-off (float64 gives
# ~1e-14), so it is judged on the absolute scale of real gradients (up to ~10 here), not against
# its own noise.  The soft mask's 1x1 convs feed a sigmoid and keep the default.
_ZERO_TRUE_GRADIENT = Tolerance(rtol=0.0, atol=1e-4, mode="max")
_BIASES_BEFORE_BN = ("grad:stem.conv.bias", "grad:*.conv1.bias", "grad:*.conv2.bias", "grad:*.branch*.conv.bias")
DEEP_FLOAT32 = ToleranceSet(default=Tolerance(rtol=1e-4, atol=1e-5, mode="max"))
for _pattern in _BIASES_BEFORE_BN:
    DEEP_FLOAT32 = DEEP_FLOAT32.with_override(_pattern, _ZERO_TRUE_GRADIENT)
DEEP_FLOAT32 = (DEEP_FLOAT32.with_override("grad:*.mask.conv?.bias", DEEP_FLOAT32.default)
                .with_override("output:*", _LOGITS).with_override("head.fc2", _LOGITS))
DEEP_FLOAT32_ISOLATED = ToleranceSet(default=Tolerance(DTYPE_DEFAULTS["float32"].rtol, DTYPE_DEFAULTS["float32"].atol, "max"))
MEDIANET_TOLERANCES = dict(tolerances=DEEP_FLOAT32, isolated_tolerances=DEEP_FLOAT32_ISOLATED)

CASES: dict[str, ParityCase] = {
    case.name: case
    for case in (
        ParityCase("resnet18", "resnet18", ZOO_FACTORIES, config={"num_classes": 10}, input_shape=(2, 3, 64, 80)),
        # MeDiANet: the paper head fixes a 224x224 input; the small global-head case keeps H != W
        *(ParityCase(f"medianet_{v}", f"medianet_{v}", ZOO_FACTORIES, config={"num_classes": 35},
                     input_shape=(2, 3, 224, 224), allow_square_input=True, **MEDIANET_TOLERANCES)
          for v in ("base69", "base117", "wide69", "wide117")),
        ParityCase("medianet_base69_global", "medianet_base69", ZOO_FACTORIES,
                   config={"num_classes": 7, "head": "global"}, input_shape=(2, 3, 64, 96), **MEDIANET_TOLERANCES),
    )
}


def get_case(name: str) -> ParityCase:
    try:
        return CASES[name]
    except KeyError:
        raise KeyError(f"no parity case {name!r}; known cases: {', '.join(sorted(CASES))}") from None
