"""twinframe's own zoo as parity cases: data only (factory paths are strings, nothing imported).

Inputs follow spec/numerics.md: batch >= 2, H != W, and channel and class counts
that differ from the spatial sizes, so transposition bugs cannot hide.
"""

from __future__ import annotations

from parity.checks import ParityCase

ZOO_FACTORIES = {"torch": "impl_torch:create_model", "tf": "impl_tf:create_model"}

CASES: dict[str, ParityCase] = {
    case.name: case
    for case in (
        ParityCase("resnet18", "resnet18", ZOO_FACTORIES, config={"num_classes": 10}, input_shape=(2, 3, 64, 80)),
        # MeDiANet: the paper head fixes a 224x224 input; the small global-head case keeps H != W
        *(ParityCase(f"medianet_{v}", f"medianet_{v}", ZOO_FACTORIES, config={"num_classes": 35},
                     input_shape=(2, 3, 224, 224), allow_square_input=True)
          for v in ("base69", "base117", "wide69", "wide117")),
        ParityCase("medianet_base69_global", "medianet_base69", ZOO_FACTORIES,
                   config={"num_classes": 7, "head": "global"}, input_shape=(2, 3, 64, 96)),
    )
}


def get_case(name: str) -> ParityCase:
    try:
        return CASES[name]
    except KeyError:
        raise KeyError(f"no parity case {name!r}; known cases: {', '.join(sorted(CASES))}") from None
