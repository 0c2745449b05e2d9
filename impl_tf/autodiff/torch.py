"""Gradients under Keras' torch backend: its variables are torch parameters, so autograd."""

from __future__ import annotations

import torch


def value_and_gradients(loss, variables, state=()):
    value = loss()
    grads = torch.autograd.grad(value, [v.value for v in variables], allow_unused=True)
    return value.detach(), [torch.zeros_like(v.value) if g is None else g for v, g in zip(variables, grads)]


def compiled(fn):
    return fn
