"""``assay select``: shard → score → catalog → select → mix → manifest, in one run directory.

Every stage is resumable: per-task done markers for shard and score, atomic whole-file writes for the
rest (all deterministic), so a killed run re-run with the same config ends byte-identical to an
uninterrupted one. A run directory belongs to one config: another config is refused.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import yaml

import assay
from assay.config import RunConfig
from assay.errors import ConfigError, RunStateError
from assay.pipeline.catalog import build_catalog
from assay.pipeline.executor import Executor, make_executor
from assay.pipeline.fsutil import check_writable, read_json, write_bytes, write_json
from assay.pipeline.manifest import created_time, file_entries
from assay.pipeline.manifest import validate as validate_manifest
from assay.pipeline.score import run_score
from assay.pipeline.shard import run_shard
from assay.selectors.mixture import (
    SolverContext,
    build_schedule,
    get_solver,
    parse_solver_params,
    plot_schedule,
)
from assay.selectors.select import select_documents

log = logging.getLogger("assay")
MANIFEST_VERSION = 1


def _claim_run_dir(cfg: RunConfig, run_dir: Path) -> None:
    check_writable(run_dir)
    stamp = run_dir / "_state" / "config_hash"
    digest = cfg.digest()
    if stamp.exists():
        old = stamp.read_text().strip()
        if old != digest:
            raise RunStateError(
                f"{run_dir} holds a run of another config (hash {old}, this one {digest}); "
                "use a new output directory or delete the old run"
            )
    else:
        write_bytes(stamp, (digest + "\n").encode())
    created_time(run_dir)  # stamp the first use
    write_bytes(run_dir / "config.yaml", yaml.safe_dump(cfg.to_dict(), sort_keys=True).encode())


def _target_ids(run_dir: Path, scorers: list[str]) -> set[str]:
    import pyarrow.parquet as pq

    out: set[str] = set()
    for name in scorers:
        p = run_dir / "scores" / name / "_target.parquet"
        if p.exists():
            out.update(pq.read_table(p, columns=["id"]).column("id").to_pylist())
    return out


def run_select(
    cfg: RunConfig, run_dir: Path, executor: Executor | None = None, source: str = "config"
) -> Path:
    """Run the whole pipeline into ``run_dir``; return the manifest path."""
    run_dir = Path(run_dir)
    _claim_run_dir(cfg, run_dir)
    own = executor is None
    ex = executor or make_executor(
        cfg.execution.executor, cfg.execution.workers, cfg.execution.address, cfg.execution.retries
    )
    try:
        log.info("shard: %s", ", ".join(cfg.input.paths))
        shard_stats = run_shard(cfg.input, cfg.shard, run_dir, ex)
        write_json(run_dir / "stats" / "shard.json", shard_stats)
        shards = [str(run_dir / s) for s in shard_stats["shards"]]
        log.info("score: %d shards × %d scorers", len(shards), len(cfg.scorers))
        metas = run_score(cfg.scorers, shards, run_dir, ex, source)
    finally:
        if own:
            ex.close()
    excl = _target_ids(run_dir, [s.name for s in cfg.scorers]) if cfg.select.exclude_targets else set()
    selection = select_documents(cfg.select, run_dir, shards, excl, cfg.seed)
    build_catalog(run_dir)
    schedule = _schedule(cfg, selection, run_dir)
    write_json(run_dir / "schedule.json", schedule)
    plot_schedule(schedule, run_dir / "schedule.png")
    manifest = build_manifest(cfg, run_dir, shard_stats, metas, selection, schedule)
    path = run_dir / "manifest.json"
    write_json(path, manifest)
    problems = validate_manifest(path)
    if problems:
        raise RunStateError(f"the manifest written to {path} does not validate: {'; '.join(problems[:5])}")
    log.info("manifest: %s", path)
    return path


def _schedule(cfg: RunConfig, selection: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    tokens = {d: s["selected_tokens"] for d, s in selection.items()}
    if not any(tokens.values()):
        budgets = {d: s["budget_tokens"] for d, s in selection.items()}
        raise ConfigError(
            f"no document was selected (select.method {cfg.select.method!r}, token budgets {budgets}): "
            "the budget is smaller than the best-ranked document, or no score passes the threshold"
        )
    solver = get_solver(cfg.mixture.solver)
    params = parse_solver_params(solver, cfg.mixture.params, source="mixture")
    phases = solver(tokens, params, cfg.seed, SolverContext(run_dir))
    total = int(cfg.manifest.total_tokens) if cfg.manifest.total_tokens else sum(tokens.values())
    sched = build_schedule(phases, tokens, total, cfg.manifest.max_epochs)
    sched["solver"] = {"name": cfg.mixture.solver, "params": cfg.mixture.params}
    return sched


def build_manifest(
    cfg: RunConfig,
    run_dir: Path,
    shard_stats: dict[str, Any],
    metas: dict[str, Any],
    selection: dict[str, Any],
    schedule: dict[str, Any],
) -> dict[str, Any]:
    """The manifest (schema: assay/schema/manifest.schema.json): provenance, per-domain files and
    counts, the schedule, and the size and hash of every referenced file. Paths are relative to the
    directory holding the manifest."""
    import duckdb

    con = duckdb.connect()
    shard_domains: dict[str, list[str]] = {}
    for s in shard_stats["shards"]:
        for (d,) in con.sql(
            "SELECT DISTINCT domain FROM read_parquet($p)", params={"p": str(run_dir / s)}
        ).fetchall():
            shard_domains.setdefault(d, []).append(s)
    con.close()
    domains = {}
    for d, sel in selection.items():
        dom = dict(sel)
        st = shard_stats["domains"].get(d, {})
        dom["duplicates_removed"] = st.get("duplicates", 0)
        dom["shards"] = shard_domains.get(d, [])
        dom["selection_file"] = dom.pop("file")
        dom["epochs"] = schedule["epochs"].get(d, 0.0)
        domains[d] = dom
    inputs = shard_stats["inputs"]
    run_id = _run_id(cfg, inputs)
    referenced = (
        [d["selection_file"] for d in domains.values()] + list(shard_stats["shards"]) + ["schedule.json"]
    )
    return {
        "format": "assay-manifest",
        "manifest_version": MANIFEST_VERSION,
        "run_id": run_id,
        "created": created_time(run_dir),
        "tool": {"name": "assay", "version": assay.__version__},
        "seed": cfg.seed,
        "config_hash": cfg.digest(),
        "config": cfg.to_dict(),
        "inputs": inputs,
        "rejects": {"rows": shard_stats["rejects"], "files": shard_stats["rejects_files"]},
        "scorers": metas,
        "selection": {
            "method": cfg.select.method,
            "by": cfg.select.by,
            "budget": {"fraction": cfg.select.budget.fraction, "tokens": cfg.select.budget.tokens},
            "per_domain": cfg.select.per_domain,
            "selected_docs": sum(s["selected_docs"] for s in selection.values()),
            "selected_tokens": sum(s["selected_tokens"] for s in selection.values()),
        },
        "domains": domains,
        "schedule": schedule,
        "token_unit": cfg.shard.tokenizer,
        "files": file_entries(run_dir, referenced),
    }


def _run_id(cfg: RunConfig, inputs: list[dict[str, Any]]) -> str:
    import hashlib

    h = hashlib.blake2b(digest_size=8)
    h.update(cfg.digest().encode())
    for i in inputs:
        h.update(i["hash"].encode())
    return h.hexdigest()


def run_stats(run_dir: Path) -> list[dict[str, Any]]:
    """Per-domain docs, tokens, duplicates removed, selected and score summaries (for ``assay stats``)."""
    from assay.pipeline.catalog import open_catalog

    con = open_catalog(run_dir)
    views = [r[0] for r in con.sql("SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall()]
    shard = read_json(run_dir / "stats" / "shard.json") if (run_dir / "stats" / "shard.json").exists() else {}
    rows = []
    base = con.sql(
        "SELECT domain, count(*), sum(n_tokens)::BIGINT, sum(n_chars)::BIGINT "
        "FROM docs GROUP BY domain ORDER BY domain"
    ).fetchall()
    sel = {}
    if "selection" in views:
        sel = {
            d: (n, t)
            for d, n, t in con.sql(
                "SELECT domain, count(*) FILTER (WHERE selected), "
                "coalesce(sum(n_tokens) FILTER (WHERE selected), 0)::BIGINT FROM selection GROUP BY domain"
            ).fetchall()
        }
    for d, n, tok, ch in base:
        row: dict[str, Any] = {
            "domain": d,
            "docs": n,
            "tokens": tok,
            "chars": ch,
            "duplicates": shard.get("domains", {}).get(d, {}).get("duplicates", 0),
        }
        if sel:
            row["selected_docs"], row["selected_tokens"] = sel.get(d, (0, 0))
        for v in views:
            if v.startswith("scores_"):
                mn, mean, mx = con.sql(
                    f"SELECT min(s.score), avg(s.score), max(s.score) FROM {v} s JOIN docs USING (id) "
                    "WHERE docs.domain = $d",
                    params={"d": d},
                ).fetchall()[0]  # type: ignore[misc]
                row[f"{v[7:]}_mean"] = None if mean is None or math.isnan(mean) else round(mean, 6)
                row[f"{v[7:]}_min"], row[f"{v[7:]}_max"] = mn, mx
        rows.append(row)
    rows.append({"domain": "(rejected rows)", "docs": shard.get("rejects", 0)})
    con.close()
    return rows
