"""Skill-It (Chen et al. 2023): online multiplicative-weights mixtures over skills.

Skills are the run's domains (or any labels). With A the k×m skills graph (row i: trained skill,
column j: evaluated skill; m = the target skills, all by default) and L_τ the vector of per-skill
validation losses after round τ, the mixture for the next round is

    p_{t+1} ∝ p_0 · exp(eta · A @ (L_{t-w+1} + ... + L_t))        (the last ``window`` rounds)

and the first round uses p_1 ∝ p_0 · exp(eta · A @ 1). As in the reference code (HazyResearch/skill-it,
``trainer/mw_trainer.py``): p_0 uniform, window 3 (its default ``--mw_window``), eta 0.5 (its LEGO
scripts; 0.8 and 0.2 elsewhere), off-diagonal graph entries of exactly 1 read as 0.5, and with target
skills the window's losses are averaged instead of summed.

Graph: from a file (.npy, .json {"skills": [...], "graph": [[...]]}, or .csv with a header of skill
names), or estimated with the proxy model. Estimator (documented choice): for each skill j, a fresh
proxy trained on ``estimate_tokens`` tokens of j alone gives L_j(j); for each i != j, one trained on
the same j tokens plus as many tokens of i gives L_j(i+j); A_ij = max(0, (L_j(j) - L_j(i+j)) / L_j(j)),
A_jj = 1: the relative drop of j's loss that adding i's data brings, with j's data held fixed.

Offline (``mixture: {solver: skillit}``): the proxy plays the trainer for ``rounds`` rounds of
``tokens_per_round`` tokens; the mixtures used become equal phases of the schedule. Online: a real
trainer calls ``SkillItState.step`` (or ``assay skillit step``) after each round with its losses.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from assay.errors import ConfigError, InputError
from assay.pipeline.fsutil import read_json, write_json
from assay.selectors.mixture import SOLVERS, Phase, SolverContext


def mw_weights(
    p0: np.ndarray, graph: np.ndarray, losses: list[np.ndarray], eta: float, window: int, targeted: bool
) -> np.ndarray:
    """The next mixture from the loss history (a list of vectors over the graph's columns)."""
    hist = losses[-window:] if losses else [np.ones(graph.shape[1])]
    agg = np.mean(hist, axis=0) if targeted else np.sum(hist, axis=0)
    logits = np.log(p0) + eta * (graph @ agg)
    w = np.exp(logits - logits.max())
    return w / w.sum()


def load_graph(path: str, skills: list[str]) -> np.ndarray:
    """A k×k graph in ``skills`` order from .npy (already in that order), .json or .csv."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"skillit: graph file {p} does not exist")
    names: list[str] | None = None
    try:
        if p.suffix == ".npy":
            g = np.load(p).astype(float)
        elif p.suffix == ".json":
            data = json.loads(p.read_text())
            names, g = data.get("skills"), np.array(data["graph"], dtype=float)
        elif p.suffix == ".csv":
            lines = [ln.split(",") for ln in p.read_text().strip().splitlines()]
            names, g = [c.strip() for c in lines[0]], np.array(lines[1:], dtype=float)
        else:
            raise ConfigError(f"skillit: graph file {p} must be .npy, .json or .csv")
    except (ValueError, KeyError, json.JSONDecodeError) as e:
        raise ConfigError(f"skillit: cannot read graph {p}: {e}") from e
    if g.shape != (len(skills), len(skills)):
        raise ConfigError(
            f"skillit: graph {p} has shape {g.shape}, expected {(len(skills), len(skills))} "
            f"for skills {skills}"
        )
    if names is not None:
        if sorted(names) != sorted(skills):
            raise ConfigError(f"skillit: graph {p} names skills {names}, the run has {skills}")
        order = [names.index(s) for s in skills]
        g = g[np.ix_(order, order)]
    if (g < 0).any():
        raise ConfigError(f"skillit: graph {p} has negative entries")
    return g


def reference_graph(g: np.ndarray) -> np.ndarray:
    """Off-diagonal entries of exactly 1 become 0.5, as the reference code does for given graphs."""
    g = g.copy()
    off = ~np.eye(len(g), dtype=bool) & (g == 1)
    g[off] = 0.5
    return g


@dataclass
class SkillItState:
    """Persisted online Skill-It state: a trainer reports losses, gets the next mixture."""

    skills: list[str]
    graph: list[list[float]]
    eta: float = 0.5
    window: int = 3
    target: list[str] | None = None
    p0: list[float] | None = None
    losses: list[list[float]] = field(default_factory=list)
    mixtures: list[list[float]] = field(default_factory=list)

    def _g(self) -> np.ndarray:
        g = np.array(self.graph, dtype=float)
        if self.target:
            g = g[:, [self.skills.index(t) for t in self.target]]
        return g

    def current(self) -> dict[str, float]:
        if not self.mixtures:
            p0 = np.array(self.p0 or [1.0 / len(self.skills)] * len(self.skills))
            self.mixtures.append(
                mw_weights(p0 / p0.sum(), self._g(), [], self.eta, self.window, bool(self.target)).tolist()
            )
        return dict(zip(self.skills, self.mixtures[-1]))

    def step(self, losses: dict[str, float]) -> dict[str, float]:
        """Record the per-skill validation losses of the round just trained; return the next mixture."""
        cols = self.target or self.skills
        missing = [s for s in cols if s not in losses]
        if missing:
            raise InputError(f"skillit step: losses for skills {missing} are missing; expected {cols}")
        bad = [s for s in cols if not math.isfinite(float(losses[s]))]
        if bad:
            raise InputError(f"skillit step: losses for {bad} are not finite numbers")
        self.current()
        self.losses.append([float(losses[s]) for s in cols])
        p0 = np.array(self.p0 or [1.0 / len(self.skills)] * len(self.skills))
        w = mw_weights(
            p0 / p0.sum(),
            self._g(),
            [np.array(x) for x in self.losses],
            self.eta,
            self.window,
            bool(self.target),
        )
        self.mixtures.append(w.tolist())
        return dict(zip(self.skills, self.mixtures[-1]))

    def save(self, directory: Path) -> None:
        write_json(directory / "state.json", asdict(self))

    @staticmethod
    def load(directory: Path) -> SkillItState:
        p = directory / "state.json"
        if not p.is_file():
            raise InputError(f"skillit: no state in {directory} (run `assay skillit init` first)")
        return SkillItState(**read_json(p))


@dataclass
class SkillItParams:
    graph: str | None = None
    eta: float = 0.5
    window: int = 3
    rounds: int = 8
    tokens_per_round: int = 100_000  # proxy (model) tokens per round
    estimate_tokens: int = 50_000  # per training run when estimating the graph
    target: list[str] | None = None
    val_docs: int = 8  # validation documents per skill, held out from the proxy's training
    max_val_chars: int = 2000
    context: int = 128
    n_layer: int = 2
    n_embd: int = 64
    n_head: int = 4
    batch_size: int = 16
    lr: float = 3e-3

    def validate(self) -> None:
        if self.eta <= 0 or self.window < 1 or self.rounds < 1:
            raise ConfigError("skillit: eta must be > 0, window and rounds >= 1")
        if self.tokens_per_round < 1 or self.estimate_tokens < 1 or self.val_docs < 1:
            raise ConfigError("skillit: tokens_per_round, estimate_tokens and val_docs must be >= 1")


class ProxyTrainer:
    """A proxy model trained round by round on mixtures of skills (one optimizer throughout)."""

    def __init__(self, p: SkillItParams, seed: int) -> None:
        from assay.pipeline.models import BuiltinGPT, GPTConfig
        from assay.pipeline.train import TrainConfig, make_optimizer

        self.p, self.seed = p, seed
        self.model = BuiltinGPT(
            GPTConfig(context=p.context, n_layer=p.n_layer, n_head=p.n_head, n_embd=p.n_embd), seed=seed
        )
        self.opt = make_optimizer(self.model, TrainConfig(lr=p.lr))
        self.rng = np.random.default_rng(seed)

    def train_on(self, docs: dict[str, list[str]], mixture: dict[str, float], tokens: int) -> None:
        """``tokens`` tokens drawn ∝ ``mixture`` from each skill's documents (sampled with replacement)."""
        from assay.pipeline.train import Batches, pack, train_step

        texts: list[str] = []
        for s, w in sorted(mixture.items()):
            need, got = int(w * tokens), 0
            while got < need and docs[s]:
                t = docs[s][int(self.rng.integers(len(docs[s])))]
                texts.append(t)
                got += len(t.encode()) + 1
        order = self.rng.permutation(len(texts))
        stream = pack(self.model, [texts[i] for i in order])
        b = Batches(stream, self.model.context, self.p.batch_size)
        steps = max(1, tokens // (self.p.batch_size * self.model.context))
        self.model.module.train()
        for k in range(steps):
            train_step(self.model, self.opt, b.batch(k), grad_clip=1.0)
        self.model.module.eval()

    def losses(self, val: dict[str, list[str]]) -> dict[str, float]:
        out = {}
        for s, texts in val.items():
            tot, n = 0.0, 0
            for t in texts:
                a, k = self.model.doc_loss(t[: self.p.max_val_chars])
                tot, n = tot + a, n + k
            out[s] = tot / max(n, 1)
        return out


def estimate_graph(
    docs: dict[str, list[str]], val: dict[str, list[str]], p: SkillItParams, seed: int
) -> np.ndarray:
    """The estimator in the module docstring: k single-skill and k(k-1) pair trainings."""
    skills = sorted(docs)
    k = len(skills)
    g = np.eye(k)
    for j, sj in enumerate(skills):
        alone = ProxyTrainer(p, seed)
        alone.train_on(docs, {sj: 1.0}, p.estimate_tokens)
        base = alone.losses({sj: val[sj]})[sj]
        for i, si in enumerate(skills):
            if i == j:
                continue
            both = ProxyTrainer(p, seed)
            both.train_on(docs, {sj: 0.5, si: 0.5}, 2 * p.estimate_tokens)
            g[i, j] = max(0.0, (base - both.losses({sj: val[sj]})[sj]) / base)
    return g


def split_docs(
    run_dir: Path, skills: list[str], val_docs: int, seed: int
) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """Each skill's selected documents, minus ``val_docs`` held out (by a seeded hash) for validation."""
    from assay.pipeline.evaluate import RunDocs, seeded_order

    docs = RunDocs(run_dir)
    ids = docs.selected(skills)
    texts = docs.texts([i for v in ids.values() for i in v])
    train, val = {}, {}
    for s in skills:
        order = seeded_order(ids[s], seed)
        if len(order) <= val_docs:
            raise InputError(
                f"skillit: skill {s!r} has {len(order)} selected documents; "
                f"needs more than val_docs={val_docs}"
            )
        val[s] = [texts[i] for i in order[:val_docs]]
        train[s] = [texts[i] for i in order[val_docs:]]
    return train, val


class _SkillIt:
    Params = SkillItParams

    def __call__(
        self,
        domain_tokens: dict[str, int],
        params: SkillItParams,
        seed: int,
        ctx: SolverContext | None = None,
    ) -> list[Phase]:
        if ctx is None or ctx.run_dir is None:
            raise ConfigError("skillit needs the run's documents (it trains a proxy model)")
        skills = sorted(d for d, n in domain_tokens.items() if n > 0)
        bad = sorted(set(params.target or []) - set(skills))
        if bad:
            raise ConfigError(f"skillit: target skills {bad} are not among the run's skills {skills}")
        docs, val = split_docs(ctx.run_dir, skills, params.val_docs, seed)
        if params.graph:
            g = reference_graph(load_graph(params.graph, skills))
            source = params.graph
        else:
            g = estimate_graph(docs, val, params, seed)
            source = "estimated"
        state = SkillItState(skills, g.tolist(), params.eta, params.window, params.target)
        trainer = ProxyTrainer(params, seed)
        phases = []
        mix = state.current()
        for r in range(params.rounds):
            phases.append(
                Phase(
                    r / params.rounds, (r + 1) / params.rounds, {**dict.fromkeys(domain_tokens, 0.0), **mix}
                )
            )
            trainer.train_on(docs, mix, params.tokens_per_round)
            losses = trainer.losses(val)
            mix = state.step(losses)
        write_json(ctx.run_dir / "skillit.json", {"graph_source": source, **asdict(state)})
        return phases


SOLVERS.register("skillit")(_SkillIt())
