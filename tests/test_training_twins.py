"""The written-out Adam(W) of each twin trainer against the framework's own optimizer.

Each check runs in its own subprocess (one framework per process).  Three steps on random
gradients; the written-out update must match the built-in one to float32 round-off, which
shows the recipe's formulas (eps placement, decoupled decay, coupled L2) are the frameworks'.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.torch, pytest.mark.tf]  # runs both frameworks (in subprocesses)
ROOT = Path(__file__).resolve().parent.parent

TORCH = """
import json, numpy as np, torch
from impl_torch.training import Trainer
from canon.training import OptimizerSpec
rng = np.random.default_rng(0)
results = {}
for name, spec, builtin in (
    ("adamw", OptimizerSpec(1e-3, eps=1e-8, weight_decay=0.01, decoupled=True),
     lambda p: torch.optim.AdamW(p, lr=1e-3, eps=1e-8, weight_decay=0.01)),
    ("adam_l2", OptimizerSpec(5e-5, weight_decay=1e-4),
     lambda p: torch.optim.Adam(p, lr=5e-5, weight_decay=1e-4)),
):
    net = torch.nn.Linear(7, 5)
    twin = torch.nn.Linear(7, 5)
    twin.load_state_dict(net.state_dict())
    trainer, optimizer = Trainer(net, spec, "cross_entropy"), builtin(list(twin.parameters()))
    for _ in range(3):
        grads = [torch.from_numpy(rng.standard_normal(tuple(p.shape)).astype(np.float32)) for p in net.parameters()]
        trainer._adam(grads, spec.lr)
        for p, g in zip(twin.parameters(), grads):
            p.grad = g.clone()
        optimizer.step()
    results[name] = max(float((a - b).abs().max() / b.abs().max()) for a, b in zip(net.parameters(), twin.parameters()))
print(json.dumps(results))
"""

KERAS = """
import json, numpy as np, keras, tensorflow as tf
from impl_tf.training import Trainer
from canon.training import OptimizerSpec
rng = np.random.default_rng(0)
# Keras raises beta to the step in float32, so its 1 - beta2^t carries a relative error of
# ~1e-5 at beta2 = 0.999 (6.8e-6 on the weights after three steps).  Betas whose powers are
# exact in float32 take that out and leave the formulas alone to compare.
spec = OptimizerSpec(1e-3, betas=(0.5, 0.75), eps=1e-7, eps_placement="v", weight_decay=0.01, decoupled=True)
def dense():
    x = keras.Input((7,)); return keras.Model(x, keras.layers.Dense(5, name="fc")(x))
net, twin = dense(), dense()
twin.set_weights(net.get_weights())
trainer = Trainer(net, spec, "cross_entropy")
optimizer = keras.optimizers.AdamW(1e-3, weight_decay=0.01, beta_1=0.5, beta_2=0.75, epsilon=1e-7)
for _ in range(3):
    grads = [tf.constant(rng.standard_normal(tuple(v.shape)).astype(np.float32)) for v in net.trainable_variables]
    trainer._adam(grads, spec.lr)
    optimizer.apply_gradients(zip(grads, twin.trainable_variables))
print(json.dumps({"keras_adamw": max(float(np.abs(a.numpy() - b.numpy()).max() / np.abs(b.numpy()).max())
                                     for a, b in zip(net.trainable_variables, twin.trainable_variables))}))
"""


@pytest.mark.parametrize("code", [TORCH, KERAS], ids=["torch", "keras"])
def test_written_out_adam_matches_the_frameworks_own(code):
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300,
                            env={**__import__("os").environ, "TF_CPP_MIN_LOG_LEVEL": "3", "TF_ENABLE_ONEDNN_OPTS": "0"})
    assert result.returncode == 0, result.stderr[-3000:]
    errors = json.loads(result.stdout.strip().splitlines()[-1])
    assert errors and all(error <= 1e-6 for error in errors.values()), errors


TORCH_BF16_CONV = """
import json, torch
torch.manual_seed(0)
errors = {2: 0.0, 1: 0.0}
# A 2x2 map through a stride-2 3x3 conv (right), then a 1x1 map: wrong in about 4 of 5 tries,
# seemingly from memory the kernel never wrote, so 40 tries make a miss all but impossible.
for _ in range(40):
    for size in (2, 1):
        conv = torch.nn.Conv2d(16, 32, 3, 2, 1, bias=False)
        x = torch.randn(32, 16, size, size)
        exact = torch.nn.functional.conv2d(x.bfloat16().float(), conv.weight.bfloat16().float(), None, 2, 1)
        want, = torch.autograd.grad(exact.sum(), conv.weight)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = conv(x)
        got, = torch.autograd.grad(y.float().sum(), conv.weight)
        errors[size] = max(errors[size], float((got - want).abs().max() / want.abs().max()))
print(json.dumps(errors))
"""


@pytest.mark.xfail(strict=True, reason="upstream: torch 2.13 CPU bfloat16 conv weight gradient is garbage (up to "
                                       "1e38, different each call) for a 1x1 input through a stride-2 3x3 conv")
def test_torch_cpu_bfloat16_conv_weight_gradient_is_right_on_a_1x1_map():
    """Found by the bfloat16 run test: ResNet-18 on 8 px digits gave a different final sha256 on
    every run.  While this xfail holds, mixed precision on torch/CPU needs inputs whose strided
    convs never see a 1x1 map (README, Training runs, Precision); once torch fixes it, this test fails (strict) as
    the reminder to lift the note."""
    result = subprocess.run([sys.executable, "-c", TORCH_BF16_CONV], cwd=ROOT, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    errors = json.loads(result.stdout.strip().splitlines()[-1])
    assert errors["2"] < 1e-2, errors  # the 2x2 map is right to bfloat16 rounding
    assert errors["1"] < 1e-2, errors
