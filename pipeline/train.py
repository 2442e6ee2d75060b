"""Training loop for proxy models: a token budget, AdamW, warmup then cosine / linear / WSD / constant
learning rate, checkpoints with the optimizer state (LESS reads Adam's moments), exact resume.

Data: documents in the given order, each as [eos] + tokens, packed into one stream and cut into
sequences of ``context + 1`` tokens (consecutive sequences share one boundary token); batch k is
sequences [k·B, (k+1)·B). Nothing in a step draws random numbers (no dropout), so the weights after
a step depend only on the seed, the data and the config, and a resumed run equals an uninterrupted
one exactly.
"""

from __future__ import annotations

import math
import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from assay.errors import ConfigError, InputError
from assay.pipeline.fsutil import read_json, write_json
from assay.pipeline.models import ProxyModel


@dataclass
class TrainConfig:
    tokens: int = 1_000_000  # training budget in model tokens (steps = tokens // (batch_size * context))
    batch_size: int = 16
    lr: float = 3e-3
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    warmup: float = 0.05  # fraction of the steps
    schedule: Literal["cosine", "linear", "wsd", "constant"] = "cosine"
    decay_fraction: float = 0.2  # WSD: the final fraction of steps decays linearly
    grad_clip: float = 1.0
    seed: int = 0
    checkpoint_every: int = 0  # steps; 0: only at the end
    allow_repeat: bool = False  # allow a budget larger than the data (epochs > 1)

    def validate(self) -> None:
        if self.tokens <= 0 or self.batch_size <= 0 or self.lr <= 0:
            raise ConfigError("tokens, batch_size and lr must be > 0")
        if not 0 <= self.warmup < 1 or not 0 < self.decay_fraction <= 1:
            raise ConfigError("warmup must be in [0, 1) and decay_fraction in (0, 1]")


def lr_at(step: int, total: int, c: TrainConfig) -> float:
    """Learning rate for ``step`` (0-based) of ``total``: linear warmup, then the schedule's decay
    from ``lr`` to ``lr * min_lr_ratio``."""
    warm = int(c.warmup * total)
    if step < warm:
        return c.lr * (step + 1) / warm
    lo = c.lr * c.min_lr_ratio
    if c.schedule == "constant":
        return c.lr
    if c.schedule == "wsd":
        start = max(warm, total - int(c.decay_fraction * total))
        if step < start:
            return c.lr
        frac = (step - start) / max(1, total - start)
        return c.lr + (lo - c.lr) * frac
    frac = (step - warm) / max(1, total - warm)
    if c.schedule == "linear":
        return c.lr + (lo - c.lr) * frac
    return lo + 0.5 * (c.lr - lo) * (1 + math.cos(math.pi * frac))


def pack(model: ProxyModel, texts: Sequence[str]) -> torch.Tensor:
    """All documents as one int64 token stream: [eos] + tokens for each."""
    ids: list[int] = []
    for t in texts:
        ids.extend(model.encode_doc(t))
    return torch.tensor(ids, dtype=torch.long)


class Batches:
    """Sequences of context+1 tokens cut from the packed stream, batch k = sequences [kB, (k+1)B),
    wrapping around the stream for budgets over one epoch."""

    def __init__(self, stream: torch.Tensor, context: int, batch_size: int) -> None:
        self.context, self.batch_size = context, batch_size
        self.n_seq = (len(stream) - 1) // context
        if self.n_seq < 1:
            raise InputError(
                f"the training data has {len(stream)} tokens, fewer than one sequence ({context + 1})"
            )
        self.stream = stream

    def batch(self, k: int) -> torch.Tensor:
        rows = [(k * self.batch_size + i) % self.n_seq for i in range(self.batch_size)]
        return torch.stack(
            [self.stream[r * self.context : r * self.context + self.context + 1] for r in rows]
        )


def train_step(model: ProxyModel, opt: torch.optim.Optimizer, batch: torch.Tensor, grad_clip: float) -> float:
    """One optimizer step on a (B, T+1) batch; returns the loss. ``grad_clip`` 0 disables clipping."""
    loss = model.loss(batch)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip:
        torch.nn.utils.clip_grad_norm_(model.module.parameters(), grad_clip)
    opt.step()
    return float(loss.detach())


def _save_checkpoint(
    model: ProxyModel, opt: torch.optim.Optimizer, step: int, tokens: int, out: Path
) -> None:
    final = out / f"step_{step:07d}"
    tmp = out / f".step_{step:07d}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    model.save(tmp / "model")
    torch.save(opt.state_dict(), tmp / "optim.pt")
    write_json(tmp / "state.json", {"step": step, "tokens": tokens})
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)


def latest_checkpoint(out: Path) -> Path | None:
    steps = sorted(p for p in out.glob("step_*") if p.is_dir() and (p / "state.json").exists())
    return steps[-1] if steps else None


def make_optimizer(model: ProxyModel, c: TrainConfig) -> torch.optim.AdamW:
    params = [p for p in model.module.parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    groups = [{"params": decay, "weight_decay": c.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=c.lr, betas=(c.beta1, c.beta2), foreach=False)


def train(
    model: ProxyModel,
    texts: Sequence[str],
    c: TrainConfig,
    out: Path | None = None,
    on_step: Callable[[int, int, float], None] | None = None,
    eval_every: int = 0,
    on_eval: Callable[[int, int], None] | None = None,
    stop_after: int | None = None,
) -> dict[str, Any]:
    """Train ``model`` on ``texts`` for ``c.tokens`` tokens; resume from the latest checkpoint in
    ``out``. ``stop_after`` ends early after that many steps (for tests of resuming)."""
    c.validate()
    stream = pack(model, texts)
    per_step = c.batch_size * model.context
    total = c.tokens // per_step
    if total < 1:
        raise ConfigError(f"a budget of {c.tokens} tokens is less than one step ({per_step} tokens)")
    epochs = total * per_step / max(1, len(stream) - 1)
    if epochs > 1 and not c.allow_repeat:
        raise ConfigError(
            f"the budget of {c.tokens} tokens needs {epochs:.2f} epochs of the {len(stream)} data tokens; "
            "lower the budget, add data, or allow repetition (allow_repeat)"
        )
    batches = Batches(stream, model.context, c.batch_size)
    opt = make_optimizer(model, c)
    start = 0
    if out is not None and (ck := latest_checkpoint(out)) is not None:
        state = read_json(ck / "state.json")
        weights = torch.load(ck / "model" / "model.pt", map_location="cpu", weights_only=True)
        model.module.load_state_dict(weights)
        opt.load_state_dict(torch.load(ck / "optim.pt", weights_only=True))
        start = int(state["step"])
    torch.manual_seed(c.seed)
    model.module.train()
    losses = []
    end = total if stop_after is None else min(total, start + stop_after)
    for step in range(start, end):
        for g in opt.param_groups:
            g["lr"] = lr_at(step, total, c)
        lv = train_step(model, opt, batches.batch(step), c.grad_clip)  # batch: (B, T+1)
        losses.append(lv)
        if on_step:
            on_step(step, (step + 1) * per_step, lv)
        if out is not None and c.checkpoint_every and (step + 1) % c.checkpoint_every == 0:
            _save_checkpoint(model, opt, step + 1, (step + 1) * per_step, out)
        if on_eval and eval_every and (step + 1) % eval_every == 0 and step + 1 < total:
            model.module.eval()
            on_eval(step + 1, (step + 1) * per_step)
            model.module.train()
    model.module.eval()
    if out is not None and end > start:
        _save_checkpoint(model, opt, end, end * per_step, out)
    return {
        "steps": end,
        "total_steps": total,
        "tokens": end * per_step,
        "epochs": epochs,
        "train_loss_last": float(np.mean(losses[-10:])) if losses else None,
        "config": asdict(c),
    }
