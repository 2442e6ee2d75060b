from __future__ import annotations

import math

import pytest

from assay.errors import ConfigError
from assay.selectors.mixture import (
    SOLVERS,
    FixedParams,
    Phase,
    TemperatureParams,
    build_schedule,
    largest_remainder,
    parse_solver_params,
    temperature_weights,
)

TOK = {"big": 900_000, "mid": 90_000, "small": 10_000, "empty": 0}


def test_natural_uniform_fixed() -> None:
    nat = SOLVERS.get("natural")(TOK, None, 0)[0].weights
    assert nat == pytest.approx({d: n / 1_000_000 for d, n in TOK.items()})
    assert SOLVERS.get("uniform")(TOK, None, 0)[0].weights == {d: 0.25 for d in sorted(TOK)}
    fixed = SOLVERS.get("fixed")(TOK, FixedParams({"big": 1, "small": 3}), 0)[0].weights
    assert fixed == {"big": 0.25, "empty": 0.0, "mid": 0.0, "small": 0.75}
    with pytest.raises(ConfigError, match=r"names domains \['nope'\] that the run does not have"):
        SOLVERS.get("fixed")(TOK, FixedParams({"nope": 1}), 0)
    with pytest.raises(ConfigError, match=r"unknown key 'weight' in mixture"):
        parse_solver_params(SOLVERS.get("fixed"), {"weight": {}}, "mixture")


@pytest.mark.parametrize("t", [0.5, 1.0, 2.0, 10.0])
def test_temperature_formula(t: float) -> None:
    w = temperature_weights(TOK, t)
    z = sum(n ** (1 / t) for n in TOK.values() if n)
    assert w == pytest.approx({d: (n ** (1 / t) / z if n else 0.0) for d, n in TOK.items()}, rel=1e-12)
    assert SOLVERS.get("temperature")(TOK, TemperatureParams(t), 0)[0].weights == w
    assert w["empty"] == 0.0 and math.isclose(sum(w.values()), 1.0)


def test_largest_remainder_sums_exactly() -> None:
    w = {"a": 1 / 3, "b": 1 / 3, "c": 1 / 3}
    assert largest_remainder(w, 100) == {"a": 34, "b": 33, "c": 33}
    assert sum(largest_remainder({"x": 0.123, "y": 0.877}, 999_999).values()) == 999_999


def test_schedule_tokens_add_up_and_epochs() -> None:
    tok = {"a": 1000, "b": 300}
    phases = [Phase(0.0, 0.35, {"a": 0.5, "b": 0.5}), Phase(0.35, 1.0, {"a": 0.9, "b": 0.1})]
    s = build_schedule(phases, tok, 2001, max_epochs=4)
    assert [p["tokens"] for p in s["phases"]] == [700, 1301]
    assert s["phases"][0]["start_tokens"] == 0 and s["phases"][1]["end_tokens"] == 2001
    for p in s["phases"]:
        assert sum(p["domain_tokens"].values()) == p["tokens"]
    used_b = s["phases"][0]["domain_tokens"]["b"] + s["phases"][1]["domain_tokens"]["b"]
    assert s["epochs"]["b"] == used_b / 300


def test_repetition_cap() -> None:
    with pytest.raises(
        ConfigError, match=r"repeats domain 'b' 5\.00 times \(1500 tokens from 300.*max_epochs=4"
    ):
        build_schedule([Phase(0, 1, {"a": 0.5, "b": 0.5})], {"a": 1000, "b": 300}, 3000, max_epochs=4)
    with pytest.raises(ConfigError, match="weights must be >= 0 and sum to 1"):
        build_schedule([Phase(0, 1, {"a": 0.7, "b": 0.7})], {"a": 10, "b": 10}, 10, max_epochs=4)
