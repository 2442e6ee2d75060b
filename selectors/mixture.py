"""Domain-mixture solvers: token counts per domain → a schedule of phases with weights per domain.

Weights are fractions of *tokens* within a phase (never document counts). Registered solvers:
``natural`` (proportional to tokens), ``uniform``, ``fixed`` (user weights), ``temperature``
(p_i ∝ n_i^(1/T)), ``cooldown`` (temperature lowered over training), ``upsample`` (chosen domains
upsampled at the end of training), ``skillit`` (selectors/skillit.py).

Token rounding (exact integers): phase k covers tokens [floor(N·start_k), floor(N·end_k)); within a
phase, domain tokens are floor(w_i·T_k) plus one token to the domains with the largest remainders
(ties: domain name order), so every phase sums to T_k and all phases to N exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from assay.errors import ConfigError
from assay.registry import Registry
from assay.typed import from_dict


@dataclass
class Phase:
    start: float
    end: float
    weights: dict[str, float]


@dataclass
class SolverContext:
    """What solvers that train a proxy model need besides token counts."""

    run_dir: Path | None = None


class Solver(Protocol):
    @property
    def Params(self) -> type: ...  # the dataclass of the solver's params

    def __call__(
        self, domain_tokens: dict[str, int], params: Any, seed: int, ctx: SolverContext | None = None
    ) -> list[Phase]: ...


SOLVERS: Registry[Solver] = Registry("mixture solver")


def _normalize(raw: dict[str, float], what: str) -> dict[str, float]:
    total = math.fsum(raw.values())
    if not total > 0:
        raise ConfigError(f"{what}: weights sum to {total}, expected > 0")
    return {d: raw[d] / total for d in sorted(raw)}


@dataclass
class NoParams:
    pass


class _Natural:
    Params = NoParams

    def __call__(self, domain_tokens: dict[str, int], params: Any, seed: int, ctx: Any = None) -> list[Phase]:
        return [Phase(0.0, 1.0, _normalize({d: float(n) for d, n in domain_tokens.items()}, "natural"))]


class _Uniform:
    Params = NoParams

    def __call__(self, domain_tokens: dict[str, int], params: Any, seed: int, ctx: Any = None) -> list[Phase]:
        return [Phase(0.0, 1.0, _normalize({d: 1.0 for d in domain_tokens}, "uniform"))]


@dataclass
class FixedParams:
    weights: dict[str, float] = field(default_factory=dict)

    def validate(self) -> None:
        if not self.weights:
            raise ConfigError("fixed: weights is required, e.g. {code: 0.7, prose: 0.3}")
        neg = [d for d, w in self.weights.items() if w < 0]
        if neg:
            raise ConfigError(f"fixed: negative weights for {neg}")


class _Fixed:
    Params = FixedParams

    def __call__(
        self, domain_tokens: dict[str, int], params: FixedParams, seed: int, ctx: Any = None
    ) -> list[Phase]:
        unknown = sorted(set(params.weights) - set(domain_tokens))
        if unknown:
            raise ConfigError(
                f"mixture.weights names domains {unknown} that the run does not have; "
                f"domains: {sorted(domain_tokens)}"
            )
        w = {d: float(params.weights.get(d, 0.0)) for d in domain_tokens}
        return [Phase(0.0, 1.0, _normalize(w, "fixed"))]


@dataclass
class TemperatureParams:
    temperature: float = 1.0

    def validate(self) -> None:
        if self.temperature <= 0:
            raise ConfigError("temperature must be > 0")


def temperature_weights(domain_tokens: dict[str, int], t: float) -> dict[str, float]:
    """p_i ∝ n_i^(1/T), computed in log space for large counts; empty domains get 0."""
    logs = {d: math.log(n) / t for d, n in domain_tokens.items() if n > 0}
    if not logs:
        raise ConfigError("temperature: every domain is empty")
    m = max(logs.values())
    return _normalize({d: math.exp(logs[d] - m) if d in logs else 0.0 for d in domain_tokens}, "temperature")


class _Temperature:
    Params = TemperatureParams

    def __call__(
        self, domain_tokens: dict[str, int], params: TemperatureParams, seed: int, ctx: Any = None
    ) -> list[Phase]:
        return [Phase(0.0, 1.0, temperature_weights(domain_tokens, params.temperature))]


@dataclass
class CooldownParams:
    """Cooldown: temperature ``t_start`` (upsampling small domains) held for the first
    1 - ``cool_fraction`` of training, then lowered to ``t_end`` by the end along ``shape``;
    discretised into ``phases`` equal phases, each at the temperature of its midpoint."""

    t_start: float = 5.0
    t_end: float = 1.0
    cool_fraction: float = 0.5
    shape: Literal["linear", "cosine", "step"] = "linear"
    phases: int = 10

    def validate(self) -> None:
        if self.t_start <= 0 or self.t_end <= 0:
            raise ConfigError("t_start and t_end must be > 0")
        if not 0 < self.cool_fraction <= 1:
            raise ConfigError("cool_fraction must be in (0, 1]")
        if self.phases < 1:
            raise ConfigError("phases must be >= 1")


def cooldown_temperature(x: float, p: CooldownParams) -> float:
    """Temperature at training progress x in [0, 1]."""
    start = 1.0 - p.cool_fraction
    if x <= start:
        return p.t_start
    f = (x - start) / p.cool_fraction
    if p.shape == "step":
        return p.t_end
    if p.shape == "cosine":
        f = 0.5 * (1 - math.cos(math.pi * f))
    return p.t_start + (p.t_end - p.t_start) * f


class _Cooldown:
    Params = CooldownParams

    def __call__(
        self, domain_tokens: dict[str, int], params: CooldownParams, seed: int, ctx: Any = None
    ) -> list[Phase]:
        n = params.phases
        return [
            Phase(
                k / n,
                (k + 1) / n,
                temperature_weights(domain_tokens, cooldown_temperature((k + 0.5) / n, params)),
            )
            for k in range(n)
        ]


@dataclass
class UpsampleParams:
    """End-of-training upsampling: the ``base`` mixture (natural, uniform, or ``base_weights``),
    then for the final ``fraction`` of training the ``domains`` upsampled: their base weight times the
    multiplier (``mode: multiply``), or set to the given weight (``mode: absolute``), the other domains
    rescaled to fill the rest in their base proportions."""

    domains: dict[str, float] = field(default_factory=dict)
    fraction: float = 0.15
    mode: Literal["multiply", "absolute"] = "multiply"
    base: Literal["natural", "uniform", "fixed"] = "natural"
    base_weights: dict[str, float] = field(default_factory=dict)

    def validate(self) -> None:
        if not self.domains:
            raise ConfigError("upsample: domains is required, e.g. {code: 3.0}")
        if not 0 < self.fraction < 1:
            raise ConfigError("upsample: fraction must be in (0, 1)")
        if any(v < 0 for v in self.domains.values()):
            raise ConfigError("upsample: weights and multipliers must be >= 0")
        if self.mode == "absolute" and math.fsum(self.domains.values()) > 1:
            raise ConfigError("upsample: absolute weights must sum to at most 1")


class _Upsample:
    Params = UpsampleParams

    def __call__(
        self, domain_tokens: dict[str, int], params: UpsampleParams, seed: int, ctx: Any = None
    ) -> list[Phase]:
        unknown = sorted(set(params.domains) - set(domain_tokens))
        if unknown:
            raise ConfigError(
                f"upsample: domains {unknown} are not in the run; domains: {sorted(domain_tokens)}"
            )
        if params.base == "fixed":
            base = _Fixed()(domain_tokens, FixedParams(params.base_weights), seed)[0].weights
        else:
            base = (_Natural() if params.base == "natural" else _Uniform())(domain_tokens, None, seed)[
                0
            ].weights
        if params.mode == "multiply":
            end = _normalize({d: w * params.domains.get(d, 1.0) for d, w in base.items()}, "upsample")
        else:
            fixed = math.fsum(params.domains.values())
            rest = math.fsum(w for d, w in base.items() if d not in params.domains)
            end = {
                d: params.domains[d] if d in params.domains else (w / rest * (1 - fixed) if rest else 0.0)
                for d, w in base.items()
            }
            end = _normalize(end, "upsample")
        cut = 1.0 - params.fraction
        return [Phase(0.0, cut, base), Phase(cut, 1.0, end)]


SOLVERS.register("natural")(_Natural())
SOLVERS.register("uniform")(_Uniform())
SOLVERS.register("fixed")(_Fixed())
SOLVERS.register("temperature")(_Temperature())
SOLVERS.register("cooldown")(_Cooldown())
SOLVERS.register("upsample")(_Upsample())


def get_solver(name: str, where: str = "mixture.solver") -> Solver:
    import assay.selectors.skillit  # noqa: F401 (registers "skillit")

    return SOLVERS.get(name, where=where)


def parse_solver_params(solver: Solver, params: dict[str, Any], source: str) -> Any:
    return from_dict(solver.Params, params, source=source)


def largest_remainder(weights: dict[str, float], total: int) -> dict[str, int]:
    """Integers summing to ``total``, each floor(w·total) plus one for the largest remainders."""
    names = sorted(weights)
    exact = {d: weights[d] * total for d in names}
    base = {d: math.floor(exact[d]) for d in names}
    left = total - sum(base.values())
    order = sorted(names, key=lambda d: (-(exact[d] - base[d]), d))
    for d in order[:left]:
        base[d] += 1
    return base


def build_schedule(
    phases: list[Phase], domain_tokens: dict[str, int], total_tokens: int, max_epochs: float
) -> dict[str, Any]:
    """Integer token allocation per phase and domain, epochs, and the repetition cap check."""
    if not phases:
        raise ConfigError("the mixture solver returned no phases")
    out = []
    used = dict.fromkeys(domain_tokens, 0)
    prev_end = 0
    for k, ph in enumerate(phases):
        w = {d: ph.weights.get(d, 0.0) for d in domain_tokens}
        if any(v < 0 for v in w.values()) or abs(math.fsum(w.values()) - 1.0) > 1e-9:
            raise ConfigError(f"phase {k}: weights must be >= 0 and sum to 1, got {w}")
        start_tok = prev_end
        end_tok = math.floor(total_tokens * ph.end) if k < len(phases) - 1 else total_tokens
        prev_end = end_tok
        alloc = largest_remainder(w, end_tok - start_tok)
        for d, n in alloc.items():
            if n and not domain_tokens[d]:
                raise ConfigError(f"phase {k} gives domain {d!r} {n} tokens but it has no selected tokens")
            used[d] += n
        out.append(
            {
                "index": k,
                "start": ph.start,
                "end": ph.end,
                "start_tokens": start_tok,
                "end_tokens": end_tok,
                "tokens": end_tok - start_tok,
                "weights": w,
                "domain_tokens": alloc,
                "epochs": {d: (used[d] / domain_tokens[d] if domain_tokens[d] else 0.0) for d in sorted(w)},
            }
        )
    over = {d: used[d] / n for d, n in domain_tokens.items() if n and used[d] / n > max_epochs}
    if over:
        d = max(over, key=lambda k: over[k])
        raise ConfigError(
            f"the schedule repeats domain {d!r} {over[d]:.2f} times "
            f"({used[d]} tokens from {domain_tokens[d]} selected), over manifest.max_epochs={max_epochs}; "
            f"select more of {d!r}, lower total_tokens, "
            f"or raise max_epochs to {math.ceil(over[d] * 100) / 100}"
        )
    return {
        "weights_unit": "fraction of training tokens in the phase",
        "total_tokens": total_tokens,
        "phases": out,
        "epochs": {d: (used[d] / n if n else 0.0) for d, n in sorted(domain_tokens.items())},
    }


def plot_schedule(schedule: dict[str, Any], path: Path) -> None:
    """Stacked domain weights (fractions of tokens) against training progress, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from assay.pipeline.fsutil import atomic_path

    phases = schedule["phases"]
    domains = sorted(phases[0]["weights"])
    xs = [x for ph in phases for x in (ph["start"], ph["end"])]
    ys = [[ph["weights"][d] for ph in phases for _ in (0, 1)] for d in domains]
    fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=120)
    ax.stackplot(xs, ys, labels=domains)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("training progress (fraction of tokens)")
    ax.set_ylabel("domain weight (fraction of tokens)")
    ax.set_title(
        f"schedule: {schedule.get('solver', {}).get('name', '')}, {schedule['total_tokens']:,} tokens"
    )
    ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", metadata={"Software": None})
    plt.close(fig)
