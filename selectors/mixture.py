"""Domain-mixture solvers: token counts per domain → a schedule of phases with weights per domain.

Weights are fractions of *tokens* within a phase (never document counts). Registered solvers:
``natural`` (proportional to tokens), ``uniform``, ``fixed`` (user weights), ``temperature``
(p_i ∝ n_i^(1/T)).

Token rounding (exact integers): phase k covers tokens [floor(N·start_k), floor(N·end_k)); within a
phase, domain tokens are floor(w_i·T_k) plus one token to the domains with the largest remainders
(ties: domain name order), so every phase sums to T_k and all phases to N exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Protocol

from assay.errors import ConfigError
from assay.registry import Registry
from assay.typed import from_dict


@dataclass
class Phase:
    start: float
    end: float
    weights: dict[str, float]


class Solver(Protocol):
    @property
    def Params(self) -> type: ...  # the dataclass of the solver's params

    def __call__(self, domain_tokens: dict[str, int], params: Any, seed: int) -> list[Phase]: ...


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

    def __call__(self, domain_tokens: dict[str, int], params: Any, seed: int) -> list[Phase]:
        return [Phase(0.0, 1.0, _normalize({d: float(n) for d, n in domain_tokens.items()}, "natural"))]


class _Uniform:
    Params = NoParams

    def __call__(self, domain_tokens: dict[str, int], params: Any, seed: int) -> list[Phase]:
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

    def __call__(self, domain_tokens: dict[str, int], params: FixedParams, seed: int) -> list[Phase]:
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

    def __call__(self, domain_tokens: dict[str, int], params: TemperatureParams, seed: int) -> list[Phase]:
        return [Phase(0.0, 1.0, temperature_weights(domain_tokens, params.temperature))]


SOLVERS.register("natural")(_Natural())
SOLVERS.register("uniform")(_Uniform())
SOLVERS.register("fixed")(_Fixed())
SOLVERS.register("temperature")(_Temperature())


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
