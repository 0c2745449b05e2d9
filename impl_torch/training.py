"""One optimizer step of a spec recipe in PyTorch.  Twin: impl_tf/training.py.

The update formulas are written out (not torch.optim) so that both frameworks follow the
recipe's formula term by term: eps placement, coupled L2 or decoupled weight decay,
global-norm clipping.  Everything else of a run (data order, learning-rate table, plateau
and early stopping, records) is framework-free, in repro/.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from canon.training import (AECNN_JOINT_WEIGHTS, PRECISIONS, OptimizerSpec, adam_step_scalars, float_dtype,
                            shard_loss_weight, shard_rows)

DICE_SMOOTH = 1e-6
# bfloat16 is autocast inside the step: the model is built, and exported to ONNX, in float32
EXPORTED_AS_BUILT = ("float32", "bfloat16")


def build_dtype(precision: str) -> str:
    return float_dtype(precision)


def loss_value(kind: str, logits, target: torch.Tensor, inputs: torch.Tensor | None = None,
               label_smoothing: float = 0.0):
    """The recipe's loss (canon.training.TRAINING_LOSSES) of the model's output(s) ``logits``; ``inputs``
    are the reconstruction target of aecnn_joint."""
    if kind == "aecnn_joint":
        reconstruction, logits = logits
        bce_weight, mse_weight = AECNN_JOINT_WEIGHTS
        return bce_weight * loss_value("bce_logits", logits, target) + mse_weight * loss_value("mse", reconstruction, inputs)
    if kind == "mse":
        return ((logits - target.to(logits.dtype)) ** 2).mean()
    if kind == "cross_entropy":
        log_p = F.log_softmax(logits, dim=1)
        classes = logits.shape[1]
        smoothed = F.one_hot(target.long(), classes).to(log_p.dtype) * (1.0 - label_smoothing) + label_smoothing / classes
        return -(smoothed * log_p).sum(dim=1).mean()
    if kind == "bce_logits":
        target = target.to(logits.dtype)
        return (logits.clamp(min=0) - logits * target + torch.log1p(torch.exp(-logits.abs()))).mean()
    if kind == "bce_dice":  # on probabilities; torch's BCELoss clamps the logs at -100
        p, target = logits, target.to(logits.dtype)
        bce = -(target * p.log().clamp(min=-100) + (1 - target) * (1 - p).log().clamp(min=-100)).mean()
        dice = (2 * (p * target).sum() + DICE_SMOOTH) / (p.sum() + target.sum() + DICE_SMOOTH)
        return bce + 1 - dice
    raise ValueError(f"unknown loss {kind!r}")


def prediction(outputs):
    """What the metrics judge: the last output (AECNN's logits after its reconstruction)."""
    return outputs[-1] if isinstance(outputs, (tuple, list)) else outputs


def disable_dropout(net: torch.nn.Module) -> None:
    """Trajectory parity: dropout draws from each framework's own generator, so no two masks
    agree; with rate 0 every remaining step is deterministic arithmetic on both sides."""
    for module in net.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0


def last_linear(net: torch.nn.Module) -> torch.nn.Linear:
    """The classifier: the last Linear layer (its input is the pre-logit embedding)."""
    linears = [m for m in net.modules() if isinstance(m, torch.nn.Linear)]
    if not linears:
        raise ValueError(f"{type(net).__name__} has no Linear classifier")
    return linears[-1]


class Trainer:
    """Adam(W) steps on ``net``.  ``head_only``: linear probing, only the classifier trains and
    the frozen network stays in eval mode (BN statistics fixed, dropout off), unless
    ``frozen_train_mode`` (the MedMNIST+ code's quirk) runs it in train mode.  ``engine``
    (impl_torch/distributed.py): this rank trains its shard of every batch under DDP."""

    def __init__(self, net: torch.nn.Module, optimizer: OptimizerSpec, loss: str, label_smoothing: float = 0.0,
                 head_only: bool = False, precision: str = "float32", dropout: bool = True,
                 frozen_train_mode: bool = False, engine=None):
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        self.net, self.spec, self.loss, self.label_smoothing = net, optimizer, loss, label_smoothing
        self.head_only, self.precision = head_only, precision
        self.training_mode = not head_only or frozen_train_mode
        self.device, self.dtype = next(net.parameters()).device, getattr(torch, float_dtype(precision))
        if not dropout:
            disable_dropout(net)
        head = {id(p) for p in last_linear(net).parameters()} if head_only else set()
        self.params = [p for p in net.parameters() if not head_only or id(p) in head]
        self.m = [torch.zeros_like(p) for p in self.params]
        self.v = [torch.zeros_like(p) for p in self.params]
        self.step_count = 0
        self.engine, self.ddp, self._state_stale = engine, None, False
        if engine is not None and engine.size > 1:
            for p in net.parameters():  # DDP reduces the gradient of every parameter that asks for one
                p.requires_grad_(any(p is q for q in self.params))
            self.ddp = engine.wrap(net)

    def _forward(self, x: torch.Tensor, net=None):
        """The model's output(s) in the loss dtype (float32 under bfloat16 autocast)."""
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bfloat16"):
            outputs = (net or self.net)(x)
        return tuple(o.to(self.dtype) for o in outputs) if isinstance(outputs, (tuple, list)) else outputs.to(self.dtype)

    def _tensor(self, array: np.ndarray) -> torch.Tensor:
        """A batch array on the model's device; floating data in the model's dtype."""
        tensor = torch.from_numpy(array).to(self.device)
        return tensor.to(self.dtype) if tensor.is_floating_point() else tensor

    def _loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        value = loss_value(self.loss, self._forward(x), y, x, self.label_smoothing)
        return value + self._penalty()

    def _penalty(self):
        penalty = getattr(self.net, "regularization_loss", None)
        return penalty() if penalty is not None else 0.0

    def train_step(self, x: np.ndarray, y: np.ndarray, lr: float, clip_norm: float | None = None) -> float:
        """One step on the global batch ``x, y`` (under DDP: this rank's shard of it)."""
        self.net.train(self.training_mode)
        if self.ddp is not None:
            value, grads = self._shard_loss_and_gradients(x, y)
        else:
            value = self._loss(self._tensor(x), self._tensor(y))
            grads = torch.autograd.grad(value, self.params)
            value = float(value.detach())
        if clip_norm is not None:
            grads = clip_by_global_norm(grads, clip_norm)
        self._adam(grads, lr)
        return value

    def _shard_loss_and_gradients(self, x: np.ndarray, y: np.ndarray) -> tuple[float, list]:
        """DDP: the shard's loss weighted so that DDP's average is the whole batch's gradient
        (canon.training.shard_loss_weight); backward() lets DDP's hooks all-reduce the buckets.
        Returns the whole batch's loss and the averaged gradients."""
        engine, batch = self.engine, len(x)
        rows = shard_rows(batch, engine.size, engine.rank)
        xs, ys = self._tensor(x[rows]), self._tensor(y[rows])
        data = loss_value(self.loss, self._forward(xs, self.ddp), ys, xs, self.label_smoothing)
        penalty = self._penalty()
        (data * shard_loss_weight(batch, engine.size, engine.rank) + penalty).backward()
        grads = [p.grad for p in self.params]
        for p in self.params:
            p.grad = None
        self._state_stale = True
        share = (rows.stop - rows.start) / batch
        return engine.sum(float(data.detach()) * share, self.dtype) + float(penalty), grads

    def _adam(self, grads, lr: float) -> None:
        """Scalars from spec (float64, the same for both twins); the update in the weights' dtype."""
        s, (b1, b2) = self.spec, self.spec.betas
        self.step_count += 1
        step_size, root_correction, decay = adam_step_scalars(s, self.step_count, lr)
        with torch.no_grad():
            for p, g, m, v in zip(self.params, grads, self.m, self.v):
                if s.weight_decay and not s.decoupled:
                    g = g + s.weight_decay * p  # coupled L2, torch Adam(weight_decay)
                m.mul_(b1).add_(g * (1.0 - b1))
                v.mul_(b2).add_(g * g * (1.0 - b2))
                if s.weight_decay and s.decoupled:
                    p.mul_(decay)
                if s.eps_placement == "v":
                    p.sub_(step_size * m / (v.sqrt() + s.eps))
                else:
                    p.sub_(step_size * m / (v.sqrt() / root_correction + s.eps))

    def _sync(self) -> None:
        """Under DDP, rank 0's BatchNorm statistics on every rank once training steps changed them:
        every rank then evaluates (and decides to stop) alike."""
        if self._state_stale:
            self.engine.sync_state(self.net)
            self._state_stale = False

    @torch.no_grad()
    def evaluate(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, float]:
        """The prediction (eval mode) and the batch's loss without penalties."""
        self._sync()
        self.net.eval()
        inputs = self._tensor(x)
        outputs = self._forward(inputs)
        loss = loss_value(self.loss, outputs, self._tensor(y), inputs, self.label_smoothing)
        return prediction(outputs).cpu().numpy(), float(loss)

    @torch.no_grad()
    def embed(self, x: np.ndarray) -> np.ndarray:
        """Pre-logit embedding: the input of the classifier."""
        self._sync()
        self.net.eval()
        seen = []
        hook = last_linear(self.net).register_forward_hook(lambda _m, inputs, _o: seen.append(inputs[0]))
        try:
            self._forward(self._tensor(x))
        finally:
            hook.remove()
        return seen[0].to(self.dtype).cpu().numpy()

    # -- resume state: optimizer moments, step count and the RNG ------------------------
    def optimizer_state(self) -> dict[str, np.ndarray]:
        """Under DDP every rank's RNG (its dropout draws depend on its shard's size)."""
        self._sync()
        state = {f"m.{i}": m.cpu().numpy().copy() for i, m in enumerate(self.m)}
        state.update({f"v.{i}": v.cpu().numpy().copy() for i, v in enumerate(self.v)})
        state["step_count"] = np.asarray(self.step_count, np.int64)
        state["rng"] = torch.get_rng_state().numpy().copy()
        if self.ddp is not None:
            state.update({f"rng.{rank}": rng for rank, rng in enumerate(self.engine.gather(state["rng"]))})
        return state

    def load_optimizer_state(self, state: dict[str, np.ndarray]) -> None:
        for i, (m, v) in enumerate(zip(self.m, self.v)):
            m.copy_(self._tensor(state[f"m.{i}"]))
            v.copy_(self._tensor(state[f"v.{i}"]))
        self.step_count = int(state["step_count"])
        rng = state[f"rng.{self.engine.rank}"] if self.ddp is not None else state["rng"]
        torch.set_rng_state(torch.from_numpy(rng))


def clip_by_global_norm(grads, max_norm: float):
    """torch's clip_grad_norm_: scale by max_norm / (norm + 1e-6) when that is below 1."""
    norm = torch.sqrt(sum((g.double() ** 2).sum() for g in grads))
    scale = min(1.0, max_norm / (float(norm) + 1e-6))
    return [g * scale for g in grads] if scale < 1.0 else list(grads)


def builtin_adamw_step(net: torch.nn.Module, lr: float, weight_decay: float, eps: float, label_smoothing: float):
    """A minimal hand-written loop's step with torch's own AdamW: the benchmark's baseline."""
    optimizer = torch.optim.AdamW(net.parameters(), lr=lr, eps=eps, weight_decay=weight_decay)
    penalty = getattr(net, "regularization_loss", None)

    def step(x: np.ndarray, y: np.ndarray) -> None:
        net.train()
        optimizer.zero_grad()
        loss = F.cross_entropy(net(torch.from_numpy(x)), torch.from_numpy(y), label_smoothing=label_smoothing)
        (loss + penalty() if penalty is not None else loss).backward()
        optimizer.step()

    return step
