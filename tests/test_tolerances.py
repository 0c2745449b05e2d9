import pytest

from canon.tolerances import DTYPE_DEFAULTS, Tolerance, ToleranceSet, default_for


def test_float32_defaults_are_the_documented_ones():
    assert default_for("float32") == Tolerance(rtol=1.3e-6, atol=1e-5, mode="elementwise")
    assert default_for("float16").rtol > default_for("float32").rtol > default_for("float64").rtol
    assert set(DTYPE_DEFAULTS) == {"float64", "float32", "float16", "bfloat16"}


def test_per_layer_overrides_last_match_wins():
    loose, looser = Tolerance(1e-4, 1e-4), Tolerance(1e-3, 1e-3, "max")
    tolerances = ToleranceSet().with_override("layer4.*", loose).with_override("layer4.1.*", looser)
    assert tolerances.for_layer("conv1") == default_for("float32")
    assert tolerances.for_layer("layer4.0.conv1") == loose
    assert tolerances.for_layer("layer4.1.conv1") == looser


def test_bad_tolerances_are_rejected_by_name():
    with pytest.raises(ValueError, match="mode"):
        Tolerance(1e-6, 1e-6, "median")
    with pytest.raises(ValueError, match="non-negative"):
        Tolerance(-1.0, 0.0)
    with pytest.raises(ValueError, match="int8"):
        default_for("int8")
