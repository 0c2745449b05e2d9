"""Gradients under Keras' JAX backend: the loss as a pure function of the variables' values.

Inside a ``keras.StatelessScope`` every variable reads the value given for it and an assignment
is kept in the scope instead of the variable, so ``jax.value_and_grad`` can trace the pass; what
the pass assigned to ``state`` (BatchNorm moving statistics) is assigned afterwards, as an
ordinary call would have.
"""

from __future__ import annotations

import jax
import keras


def value_and_gradients(loss, variables, state=()):
    def pure(values):
        with keras.StatelessScope(state_mapping=list(zip(variables, values))) as scope:
            value = loss()
        return value, [scope.get_current_value(v) for v in state]

    (value, assigned), grads = jax.value_and_grad(pure, has_aux=True)([v.value for v in variables])
    for variable, new in zip(state, assigned):
        if new is not None:
            variable.assign(new)
    return value, list(grads)


def compiled(fn):
    return fn  # eager: a traced step would fix the variables' current values as constants
