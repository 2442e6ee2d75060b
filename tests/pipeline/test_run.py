from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import yaml
from click.testing import CliRunner

from assay.cli import main
from assay.config import load_config
from assay.errors import ConfigError, RunStateError
from assay.pipeline.run import run_select
from conftest import REPO, SAMPLE, make_config, tree_bytes

ASSAY = str(Path(sys.executable).parent / "assay")


def test_end_to_end_manifest(tmp_path: Path, corpus: Path, local_executor: Any) -> None:
    cfg = load_config(make_config(tmp_path, corpus))
    run = tmp_path / "run"
    path = run_select(cfg, run, local_executor)
    m = json.loads(path.read_text())
    assert set(m["domains"]) == {"code", "prose"}
    for name, d in m["domains"].items():
        assert 0 < d["selected_tokens"] <= d["budget_tokens"] == int(0.5 * d["tokens"]), name
        sel = pq.read_table(run / d["selection_file"])
        assert sel.num_rows == d["docs"]
        assert sum(sel.filter(sel["selected"])["n_tokens"].to_pylist()) == d["selected_tokens"]
        assert all((run / s).exists() for s in d["shards"])
    sched = m["schedule"]
    assert sched["total_tokens"] == m["selection"]["selected_tokens"]
    assert sum(sched["phases"][0]["domain_tokens"].values()) == sched["total_tokens"]
    assert m["inputs"] and all(len(i["hash"]) == 32 for i in m["inputs"])
    assert m["scorers"]["length"]["docs"] == sum(d["docs"] for d in m["domains"].values())
    assert (run / "catalog.duckdb").exists() and (run / "config.yaml").exists()


def test_selection_is_top_scores_by_tokens(tmp_path: Path, corpus: Path, local_executor: Any) -> None:
    run = tmp_path / "run"
    run_select(load_config(make_config(tmp_path, corpus)), run, local_executor)
    docs = {r["id"]: r for p in (run / "shards").glob("*.parquet") for r in pq.read_table(p).to_pylist()}
    for p in (run / "selection").glob("*.parquet"):
        rows = pq.read_table(p).to_pylist()
        budget = int(0.5 * sum(r["n_tokens"] for r in rows))
        ranked = sorted(rows, key=lambda r: (-len(docs[r["id"]]["text"]), r["id"]))
        expect, used = set(), 0
        for r in ranked:  # the reference: largest prefix of the ranking within the budget
            if used + r["n_tokens"] > budget:
                break
            used += r["n_tokens"]
            expect.add(r["id"])
        assert {r["id"] for r in rows if r["selected"]} == expect


def test_local_and_ray_runs_are_byte_identical(
    tmp_path: Path, corpus: Path, local_executor: Any, ray_executor: Any
) -> None:
    cfg = load_config(make_config(tmp_path, corpus))
    run_select(cfg, tmp_path / "a", local_executor)
    run_select(cfg, tmp_path / "b", ray_executor)
    assert tree_bytes(tmp_path / "a") == tree_bytes(tmp_path / "b")


def test_run_dir_of_another_config_is_refused(tmp_path: Path, corpus: Path, local_executor: Any) -> None:
    run_select(load_config(make_config(tmp_path, corpus)), tmp_path / "run", local_executor)
    other = load_config(make_config(tmp_path, corpus, seed=4))
    with pytest.raises(RunStateError, match=r"holds a run of another config"):
        run_select(other, tmp_path / "run", local_executor)


def test_cli_select_stats_query(tmp_path: Path, corpus: Path) -> None:
    runner = CliRunner()
    cfg = make_config(tmp_path, corpus)
    res = runner.invoke(main, ["select", "--config", str(cfg), "--out", str(tmp_path / "run")])
    assert res.exit_code == 0, res.output
    assert "manifest written" in res.output
    res = runner.invoke(main, ["stats", str(tmp_path / "run")])
    assert res.exit_code == 0 and "prose" in res.output and "length_mean" in res.output
    out = subprocess.run(
        [ASSAY, "query", str(tmp_path / "run"), "SELECT count(*) AS n FROM docs"],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
    )
    assert "12" in out.stdout


def test_cli_errors_are_clear_and_write_nothing(tmp_path: Path, corpus: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"input": {"paths": [str(corpus)]}, "selec": {}}))
    out = subprocess.run(
        [ASSAY, "select", "--config", str(bad), "--out", str(tmp_path / "r1")], capture_output=True, text=True
    )
    assert out.returncode == 2
    assert "error: unknown key 'selec' in" in out.stderr and "bad.yaml" in out.stderr
    assert "Traceback" not in out.stderr and not (tmp_path / "r1").exists()
    (tmp_path / "afile").write_text("x")
    out = subprocess.run(
        [
            ASSAY,
            "select",
            "--config",
            str(make_config(tmp_path, corpus)),
            "--out",
            str(tmp_path / "afile" / "run"),
        ],
        capture_output=True,
        text=True,
    )
    assert out.returncode != 0 and "is not writable" in out.stderr and "afile" in out.stderr
    bad_input = tmp_path / "in.jsonl"
    bad_input.write_text('{"text": "fine"}\n{"text": null}\n')
    cfg = make_config(tmp_path, corpus, input={"paths": [str(bad_input)]})
    out = subprocess.run(
        [ASSAY, "select", "--config", str(cfg), "--out", str(tmp_path / "r2"), "--executor", "local"],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 3, out.stderr
    assert "in.jsonl, line 2: field 'text' is NoneType, expected a string" in out.stderr
    assert not (tmp_path / "r2" / "manifest.json").exists() and not list((tmp_path / "r2").rglob("*.parquet"))


def test_cli_skip_policy_reports_rejects(tmp_path: Path, corpus: Path) -> None:
    bad_input = tmp_path / "in.jsonl"
    bad_input.write_text('{"text": "fine text here"}\n{"text": 3}\nnot json\n{"text": "more text"}\n')
    cfg = make_config(
        tmp_path, corpus, input={"paths": [str(bad_input)], "on_error": "skip"}, select={"method": "all"}
    )
    res = CliRunner().invoke(main, ["select", "--config", str(cfg), "--out", str(tmp_path / "run")])
    assert res.exit_code == 0, res.output
    m = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert m["rejects"]["rows"] == 2
    lines = [json.loads(x) for x in (tmp_path / "run" / m["rejects"]["files"][0]).read_text().splitlines()]
    assert [(r["row"], r["reason"][:14]) for r in lines] == [(1, "field 'text' i"), (2, "malformed JSON")]
    res = CliRunner().invoke(main, ["stats", str(tmp_path / "run")])
    assert "(rejected rows)  2" in res.output
    res = CliRunner().invoke(main, ["query", str(tmp_path / "run"), "SELECT count(*) AS n FROM rejects"])
    assert res.exit_code == 0 and "2" in res.output


def test_nothing_selected_is_a_clear_error(tmp_path: Path, corpus: Path, local_executor: Any) -> None:
    cfg = load_config(make_config(tmp_path, corpus, select={"by": "length", "budget": {"fraction": 0.001}}))
    with pytest.raises(
        ConfigError, match=r"no document was selected .*token budgets \{'code': 0, 'prose': 0\}"
    ):
        run_select(cfg, tmp_path / "run", local_executor)
    assert not (tmp_path / "run" / "manifest.json").exists()


def _kill_config(tmp_path: Path) -> Path:
    cfg = {
        "input": {"paths": [str(SAMPLE / "*.jsonl.zst")], "domain": {"path_pattern": "{domain}.jsonl.zst"}},
        "shard": {"target_mb": 0.3},
        "scorers": [
            {"name": "compression", "target": {"domain": "code-python", "sample": 8}},
            {"name": "dsir", "target": {"domain": "code-python"}},
        ],
        "select": {"method": "gumbel", "by": "dsir", "budget": {"fraction": 0.2}},
        "mixture": {"solver": "temperature", "temperature": 3.0},
        "seed": 11,
    }
    p = tmp_path / "kill.yaml"
    p.write_text(yaml.safe_dump(cfg))
    return p


def _run_until(cfg: Path, run: Path, stage: str, n: int) -> None:
    """Start `assay select` on Ray and SIGKILL its whole process group once ``n`` tasks of ``stage`` are done."""
    proc = subprocess.Popen(
        [ASSAY, "-q", "select", "--config", str(cfg), "--out", str(run), "--workers", "2"],
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if len(list((run / "_state" / stage).glob("*.done"))) >= n:
                break
            time.sleep(0.05)
        assert proc.poll() is None, "the run finished before it could be killed"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@pytest.mark.slow
def test_sigkill_then_rerun_is_byte_identical(tmp_path: Path) -> None:
    cfg = _kill_config(tmp_path)
    ref = tmp_path / "ref"
    subprocess.run(
        [ASSAY, "-q", "select", "--config", str(cfg), "--out", str(ref), "--executor", "local"],
        check=True,
        capture_output=True,
    )
    run = tmp_path / "killed"
    _run_until(cfg, run, "ingest", 1)  # killed while sharding
    assert not (run / "manifest.json").exists()
    _run_until(cfg, run, "score", 3)  # resumed, then killed again while scoring
    assert not (run / "manifest.json").exists()
    done = len(list((run / "_state" / "score").glob("*.done")))
    subprocess.run(
        [ASSAY, "-q", "select", "--config", str(cfg), "--out", str(run), "--workers", "2"],
        check=True,
        capture_output=True,
    )
    assert done >= 3
    assert not list(run.rglob("*.tmp")), "a temp file survived"
    assert tree_bytes(run) == tree_bytes(ref)


def test_packaging_does_not_shadow_stdlib() -> None:
    """`selectors` at the repo root must not shadow the standard library's (subprocess imports it)."""
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "import selectors, subprocess, assay.selectors.select as s; "
            "print(selectors.__file__); print(s.__name__)",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    stdlib, name = out.stdout.split()
    assert not stdlib.startswith(str(REPO)) and name == "assay.selectors.select"
