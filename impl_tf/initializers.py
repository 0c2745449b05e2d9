"""Keras initializers with the distributions of PyTorch's.

Each function returns a fresh instance: Keras 3 fixes an unseeded initializer's seed when it
is created (from Python's random, so set_random_seed makes it reproducible), and one instance
shared between layers would give every same-shaped layer the same values.
"""

from __future__ import annotations

import math

import keras


def kaiming_normal(mode: str = "fan_out") -> keras.initializers.Initializer:
    """``nn.init.kaiming_normal_(w, mode=mode, nonlinearity="relu")``."""
    return keras.initializers.VarianceScaling(2.0, mode=mode, distribution="untruncated_normal")


def normal(std: float) -> keras.initializers.Initializer:
    return keras.initializers.RandomNormal(stddev=std)


def torch_default_kernel() -> keras.initializers.Initializer:
    """torch's default Conv/Linear weight: kaiming_uniform(a=sqrt(5)) = U(+-1/sqrt(fan_in)).
    Keras computes a transposed conv's fan-in from (kh, kw, out, in) as torch does from (in, out, kh, kw)."""
    return keras.initializers.VarianceScaling(1.0 / 3.0, mode="fan_in", distribution="uniform")


def torch_default_bias(fan_in: int) -> keras.initializers.Initializer:
    """torch's default bias: U(+-1/sqrt(fan_in)) of the layer's weight."""
    bound = 1.0 / math.sqrt(fan_in)
    return keras.initializers.RandomUniform(-bound, bound)
