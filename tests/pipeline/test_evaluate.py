from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from assay.cli import main
from assay.config import load_config
from assay.errors import InputError
from assay.pipeline.evaluate import EvalConfig, build_streams, evaluate
from assay.pipeline.models import BuiltinGPT, GPTConfig, load_model
from assay.pipeline.run import run_select
from assay.pipeline.train import TrainConfig
from conftest import make_config

TINY = GPTConfig(context=16, n_layer=1, n_head=2, n_embd=16)


@pytest.fixture
def run(tmp_path: Path, corpus: Path, local_executor: Any) -> Path:
    cfg = make_config(
        tmp_path,
        corpus,
        scorers=[{"name": "compression", "target": {"domain": "code", "sample": 2}}],
        select={"by": "compression", "budget": {"fraction": 0.6}},
    )
    run_select(load_config(cfg), tmp_path / "run", local_executor)
    return tmp_path / "run"


def test_streams_follow_the_manifest_and_exclude_targets(run: Path) -> None:
    m = json.loads((run / "manifest.json").read_text())
    target = set(pq.read_table(run / "scores" / "compression" / "_target.parquet")["id"].to_pylist())
    streams = build_streams(run / "manifest.json", ["random", "natural"], target, seed=0)
    sel = pa.concat_tables([pq.read_table(run / d["selection_file"]) for d in m["domains"].values()])
    selected = set(sel.filter(sel["selected"])["id"].to_pylist())
    assert set(streams["manifest"]) <= selected and not set().union(*map(set, streams.values())) & target
    tokens = dict(zip(sel["id"].to_pylist(), sel["n_tokens"].to_pylist()))
    total = m["schedule"]["total_tokens"]
    for (
        name,
        ids,
    ) in streams.items():  # each stream meets the budget, overshooting by at most one doc per domain
        got = sum(tokens[i] for i in ids)
        assert total <= got <= total + 2 * max(tokens.values()), name
    assert build_streams(run / "manifest.json", ["random"], target, seed=0) == {
        k: v for k, v in streams.items() if k != "natural"
    }


def test_eval_writes_table_plot_and_equal_budgets(run: Path, tmp_path: Path) -> None:
    cfg = EvalConfig(model=TINY, train=TrainConfig(tokens=16 * 2 * 6, batch_size=2), eval_points=2)
    res = evaluate([run / "manifest.json"], "domain:code", cfg, tmp_path / "ev")
    assert set(res["streams"]) == {"run", "random", "natural"}
    assert res["target_docs"] == 2 and res["budget_tokens"] == 192
    for s in res["streams"].values():
        assert s["curve"][0][0] == 0 and s["curve"][-1][0] == 192 and s["target_loss"] == s["curve"][-1][1]
    png = (tmp_path / "ev" / "eval.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| stream | docs | target loss" in (tmp_path / "ev" / "eval.md").read_text()


def test_eval_bad_targets(run: Path, tmp_path: Path) -> None:
    cfg = EvalConfig(model=TINY, train=TrainConfig(tokens=64, batch_size=2))
    with pytest.raises(InputError, match=r"holds out no documents of domain 'prose'"):
        evaluate([run / "manifest.json"], "domain:prose", cfg, tmp_path / "ev")
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(InputError, match=r"empty\.jsonl: file is empty"):
        evaluate([run / "manifest.json"], f"file:{tmp_path / 'empty.jsonl'}", cfg, tmp_path / "ev")
    with pytest.raises(InputError, match=r"manifest .*nope\.json does not exist"):
        evaluate([tmp_path / "nope.json"], "domain:code", cfg, tmp_path / "ev")


def test_loss_and_train_cli(run: Path, tmp_path: Path) -> None:
    model = BuiltinGPT(TINY, seed=1)
    model.save(tmp_path / "m")
    res = CliRunner().invoke(
        main, ["loss", "--model", str(tmp_path / "m"), "--run", str(run), "--executor", "local"]
    )
    assert res.exit_code == 0, res.output
    t = pa.concat_tables([pq.read_table(p) for p in sorted((run / "scores" / "loss").glob("0*.parquet"))])
    assert t.column_names == ["id", "score", "nll", "tokens", "chars"]
    docs = {
        r["id"]: r["text"] for p in (run / "shards").glob("*.parquet") for r in pq.read_table(p).to_pylist()
    }
    m2 = load_model(str(tmp_path / "m"))
    for r in t.to_pylist()[:4]:
        assert (r["nll"], r["tokens"]) == m2.doc_loss(docs[r["id"]])
    res = CliRunner().invoke(main, ["query", str(run), "SELECT count(*) FROM scores_loss"])
    assert res.exit_code == 0 and str(t.num_rows) in res.output
    cfg = tmp_path / "train.yaml"
    cfg.write_text("model: {context: 16, n_layer: 1, n_head: 2, n_embd: 16}\ntrain: {batch_size: 2}\n")
    res = CliRunner().invoke(
        main,
        [
            "train",
            "--manifest",
            str(run / "manifest.json"),
            "--out",
            str(tmp_path / "t"),
            "--config",
            str(cfg),
            "--tokens",
            "96",
        ],
    )
    assert res.exit_code == 0, res.output
    assert (tmp_path / "t" / "model" / "model.pt").exists() and (
        tmp_path / "t" / "checkpoints" / "step_0000003"
    ).exists()
    res = CliRunner().invoke(
        main,
        [
            "loss",
            "--model",
            str(tmp_path / "missing"),
            "--run",
            str(run),
            "--executor",
            "local",
            "--name",
            "l2",
        ],
    )
    assert res.exit_code == 2 and "has no config.json" in res.output


def test_loss_on_ray_matches_local(run: Path, tmp_path: Path, ray_executor: Any) -> None:
    """`assay loss` runs per shard on the (already started) local Ray cluster; same bytes as in-process."""
    BuiltinGPT(TINY, seed=2).save(tmp_path / "m")
    for name, ex in (("l_ray", "ray"), ("l_local", "local")):
        res = CliRunner().invoke(
            main,
            ["loss", "--model", str(tmp_path / "m"), "--run", str(run), "--executor", ex, "--name", name],
        )
        assert res.exit_code == 0, res.output
    ray_files = sorted((run / "scores" / "l_ray").glob("0*.parquet"))
    assert ray_files and [p.read_bytes() for p in ray_files] == [
        (run / "scores" / "l_local" / p.name).read_bytes() for p in ray_files
    ]
