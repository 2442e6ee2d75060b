from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from assay.cli import main
from assay.config import load_config
from assay.errors import ConfigError, InputError
from assay.pipeline.run import run_select
from assay.pipeline.synthetic import SKILLS, write_corpus
from assay.selectors.mixture import CooldownParams, UpsampleParams, cooldown_temperature, get_solver
from assay.selectors.skillit import SkillItState, load_graph, mw_weights, reference_graph

TOK = {"a": 8000, "b": 1000, "c": 100}


def test_cooldown_formula_and_phases() -> None:
    p = CooldownParams(t_start=5, t_end=1, cool_fraction=0.5, shape="linear", phases=4)
    assert [cooldown_temperature(x, p) for x in (0.0, 0.5, 0.75, 1.0)] == [5, 5, 3, 1]
    phases = get_solver("cooldown")(TOK, p, 0)
    assert [(ph.start, ph.end) for ph in phases] == [(0, 0.25), (0.25, 0.5), (0.5, 0.75), (0.75, 1.0)]
    for ph, t in zip(phases, (5, 5, 4, 2)):  # midpoints 0.125, 0.375, 0.625, 0.875
        z = sum(n ** (1 / t) for n in TOK.values())
        assert ph.weights == pytest.approx({d: n ** (1 / t) / z for d, n in TOK.items()})
    cos = CooldownParams(t_start=4, t_end=2, cool_fraction=1.0, shape="cosine")
    assert cooldown_temperature(0.5, cos) == pytest.approx(3.0)
    assert cooldown_temperature(0.6, CooldownParams(shape="step")) == 1.0


def test_upsample_multiply_and_absolute() -> None:
    ph = get_solver("upsample")(TOK, UpsampleParams(domains={"c": 10}, fraction=0.2), 0)
    assert [(p.start, p.end) for p in ph] == [(0.0, 0.8), (0.8, 1.0)]
    nat = {d: n / 9100 for d, n in TOK.items()}
    assert ph[0].weights == pytest.approx(nat)
    z = 8000 + 1000 + 1000
    assert ph[1].weights == pytest.approx({"a": 8000 / z, "b": 1000 / z, "c": 1000 / z})
    ab = get_solver("upsample")(TOK, UpsampleParams(domains={"c": 0.5}, mode="absolute"), 0)[1].weights
    assert ab == pytest.approx({"a": 0.5 * 8 / 9, "b": 0.5 / 9, "c": 0.5})
    with pytest.raises(ConfigError, match=r"domains \['zz'\] are not in the run"):
        get_solver("upsample")(TOK, UpsampleParams(domains={"zz": 2}), 0)


def test_mw_update_matches_the_reference_formula() -> None:
    g = np.array([[1, 0.5, 0], [0, 1, 0.5], [0, 0, 1.0]])
    losses = [
        np.array([3.0, 2.0, 1.0]),
        np.array([2.5, 1.8, 0.9]),
        np.array([2.0, 1.7, 0.8]),
        np.array([1.5, 1.5, 0.7]),
    ]
    eta, w = 0.5, 3
    p0 = np.ones(3) / 3
    expect = p0 * np.exp(eta * g @ (losses[1] + losses[2] + losses[3]))
    assert mw_weights(p0, g, losses, eta, w, targeted=False) == pytest.approx(expect / expect.sum())
    first = p0 * np.exp(eta * g @ np.ones(3))
    assert mw_weights(p0, g, [], eta, w, targeted=False) == pytest.approx(first / first.sum())
    tg = g[:, [2]]
    expect_t = p0 * np.exp(eta * tg @ np.mean([x[[2]] for x in losses[1:]], axis=0))
    assert mw_weights(p0, tg, [x[[2]] for x in losses], eta, w, targeted=True) == pytest.approx(
        expect_t / expect_t.sum()
    )


def test_graph_files(tmp_path: Path) -> None:
    (tmp_path / "g.json").write_text(json.dumps({"skills": ["b", "a"], "graph": [[1, 0], [1, 1]]}))
    g = load_graph(str(tmp_path / "g.json"), ["a", "b"])
    assert g.tolist() == [[1, 1], [0, 1]] and reference_graph(g).tolist() == [[1, 0.5], [0, 1]]
    (tmp_path / "g.csv").write_text("a,b\n1,0.2\n0,1\n")
    assert load_graph(str(tmp_path / "g.csv"), ["a", "b"]).tolist() == [[1, 0.2], [0, 1]]
    np.save(tmp_path / "g.npy", np.eye(3))
    with pytest.raises(ConfigError, match=r"has shape \(3, 3\), expected \(2, 2\)"):
        load_graph(str(tmp_path / "g.npy"), ["a", "b"])
    with pytest.raises(ConfigError, match=r"names skills \['b', 'a'\], the run has \['a', 'c'\]"):
        load_graph(str(tmp_path / "g.json"), ["a", "c"])


def test_online_state_cli_resumes(tmp_path: Path) -> None:
    (tmp_path / "g.json").write_text(json.dumps({"skills": ["x", "y"], "graph": [[1, 1], [0, 1]]}))
    r = CliRunner()
    res = r.invoke(
        main,
        [
            "skillit",
            "init",
            "--state",
            str(tmp_path / "s"),
            "--skills",
            "x,y",
            "--graph",
            str(tmp_path / "g.json"),
            "--eta",
            "0.5",
        ],
    )
    assert res.exit_code == 0, res.output
    first = json.loads(res.output)
    ref = SkillItState(["x", "y"], [[1, 0.5], [0, 1]], 0.5, 3)
    assert first == pytest.approx(ref.current())
    outs = []
    for k in range(4):
        (tmp_path / "l.json").write_text(json.dumps({"x": 2.0 - 0.1 * k, "y": 3.0 - 0.3 * k}))
        res = r.invoke(
            main, ["skillit", "step", "--state", str(tmp_path / "s"), "--losses", str(tmp_path / "l.json")]
        )
        assert res.exit_code == 0, res.output
        outs.append(json.loads(res.output))
        assert outs[-1] == pytest.approx(ref.step({"x": 2.0 - 0.1 * k, "y": 3.0 - 0.3 * k}))
    assert len(SkillItState.load(tmp_path / "s").losses) == 4
    (tmp_path / "bad.json").write_text(json.dumps({"x": 1.0}))
    res = r.invoke(
        main, ["skillit", "step", "--state", str(tmp_path / "s"), "--losses", str(tmp_path / "bad.json")]
    )
    assert res.exit_code == 3 and "losses for skills ['y'] are missing" in res.output
    with pytest.raises(InputError, match="no state in"):
        SkillItState.load(tmp_path / "nostate")


def test_offline_skillit_in_a_run(tmp_path: Path, local_executor: Any) -> None:
    corpus = write_corpus(tmp_path / "skills", total_docs=60)
    cfg = {
        "input": {"paths": [str(corpus / "*.jsonl")], "domain": {"path_pattern": "{domain}.jsonl"}},
        "select": {"method": "all"},
        "mixture": {
            "solver": "skillit",
            "graph": str(corpus / "graph.json"),
            "rounds": 3,
            "target": ["chain"],
            "tokens_per_round": 2048,
            "val_docs": 2,
            "context": 32,
            "n_layer": 1,
            "n_embd": 16,
            "n_head": 2,
            "batch_size": 4,
        },
        "manifest": {"max_epochs": 50},
        "execution": {"executor": "local"},
    }
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    run_select(load_config(tmp_path / "c.yaml"), tmp_path / "run", local_executor)
    sched = json.loads((tmp_path / "run" / "schedule.json").read_text())
    assert len(sched["phases"]) == 3
    for ph in sched["phases"]:
        assert sum(ph["weights"].values()) == pytest.approx(1.0) and min(ph["weights"].values()) >= 0
        assert sum(ph["domain_tokens"].values()) == ph["tokens"]
    st = json.loads((tmp_path / "run" / "skillit.json").read_text())
    assert st["skills"] == SKILLS and len(st["losses"]) == 3 and st["target"] == ["chain"]
    w = sched["phases"][0]["weights"]
    assert w["noise"] < w["chain"]  # the graph gives noise no edge to the target
    assert (tmp_path / "run" / "schedule.png").read_bytes()[:4] == b"\x89PNG"


def test_graph_estimation_with_the_proxy() -> None:
    from assay.pipeline.synthetic import skill_docs
    from assay.selectors.skillit import SkillItParams, estimate_graph

    docs = {s: skill_docs(s, 6, seed=k, lines=6) for k, s in enumerate(["map", "noise", "words"])}
    val = {s: skill_docs(s, 1, seed=50 + k, lines=4) for k, s in enumerate(["map", "noise", "words"])}
    p = SkillItParams(estimate_tokens=1024, context=32, n_layer=1, n_embd=16, n_head=2, batch_size=4)
    g = estimate_graph(docs, val, p, seed=0)
    assert (
        g.shape == (3, 3) and np.array_equal(np.diag(g), np.ones(3)) and (g >= 0).all() and (g < 1).sum() >= 6
    )
    assert np.array_equal(g, estimate_graph(docs, val, p, seed=0))  # deterministic
