"""The score stage: every configured scorer over every shard, one executor task per (scorer, shard),
writing ``scores/<scorer>/<shard>.parquet`` (``id``, ``score``, extras) keyed by document id.
Also ``score_file`` for ``assay score`` on a plain input file without a run."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from assay.config import InputConfig, ScorerConfig
from assay.errors import ConfigError, InputError, ShardError
from assay.pipeline.executor import Executor, Task
from assay.pipeline.fsutil import atomic_path, write_json, write_npy, write_parquet
from assay.pipeline.readers import Rejects, expand_inputs, read_batches
from assay.pipeline.shard import doc_ids, file_digest
from assay.scorers.base import (
    Scorer,
    TargetSet,
    TargetSpec,
    build_scorer,
    get_scorer_class,
    parse_params,
    sample_target,
    target_spec_of,
)


@dataclass(frozen=True)
class ScorerJob:
    name: str
    params: dict[str, Any]
    batch_rows: int
    target_path: str | None
    out_dir: str
    fit_path: str | None = None


def _scorer_for(job: ScorerJob) -> Scorer:
    fit_key = file_digest(job.fit_path) if job.fit_path else ""
    scorer = build_scorer(job.name, job.params, load_target(job.target_path), state_key=fit_key)
    if job.fit_path and not getattr(scorer, "_assay_fitted", False):
        scorer.set_fitted(np.load(job.fit_path))
        scorer._assay_fitted = True  # type: ignore[attr-defined]
    return scorer


def load_target(path: str | None) -> TargetSet | None:
    return TargetSet.from_table(pq.read_table(path)) if path else None


def _read_shard(shard: str) -> pa.Table:
    try:
        return pq.read_table(shard, columns=["id", "domain", "text", "n_tokens"])
    except (OSError, pa.ArrowException) as e:
        raise ShardError(f"cannot read shard {shard}: {e}") from e


@dataclass
class ScoreStep:
    """Score one shard with one scorer; with ``fit`` set, compute the scorer's fit state instead."""

    jobs: dict[str, ScorerJob]
    fit: bool = False

    def __call__(self, task: Task, rank: int, world_size: int) -> dict[str, Any]:
        job = self.jobs[task.payload["scorer"]]
        shard = task.payload["shard"]
        table = _read_shard(shard)
        if self.fit:
            scorer = build_scorer(job.name, job.params, load_target(job.target_path))
            state = scorer.fit_partial(table)
            write_npy(Path(job.out_dir) / "_fit" / (Path(shard).stem + ".npy"), state)
            return {"docs": table.num_rows}
        out, stats = _scorer_for(job).score_table(table, job.batch_rows)
        write_parquet(Path(job.out_dir) / Path(shard).name, out, row_group_rows=65536)
        return stats


def _target_from_docs(docs: duckdb.DuckDBPyRelation, spec: TargetSpec, where: str) -> TargetSet:
    if spec.domain is not None:
        rel = docs.filter(f"domain = {_sql_str(spec.domain)}")
    else:
        rel = docs.filter(f"id IN ({', '.join(_sql_str(i) for i in spec.ids or [])})")
    t = rel.select("id, text").to_arrow_table()
    if t.num_rows == 0:
        what = f"domain {spec.domain!r}" if spec.domain is not None else f"ids {spec.ids}"
        raise InputError(f"{where}: the target set is empty (no documents of {what})")
    return sample_target(t.column("id").to_pylist(), t.column("text").to_pylist(), spec, where)


def _target_from_file(spec: TargetSpec, where: str) -> TargetSet:
    cfg = InputConfig(paths=[spec.file or ""], text_field=spec.text_field)
    ids: list[str] = []
    texts: list[str] = []
    for src in expand_inputs(cfg):
        for b in read_batches(src, cfg, 4096, Rejects()):
            ids.extend(doc_ids(b.text)[0].to_pylist())
            texts.extend(b.text.to_pylist())
    return sample_target(ids, texts, spec, f"{where} (target file {spec.file})")


def _sql_str(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def resolve_target(
    spec: TargetSpec | None, docs: duckdb.DuckDBPyRelation | None, where: str
) -> TargetSet | None:
    """Target set from a file, or from the documents (``docs``: id, domain, text) by domain or ids."""
    if spec is None:
        return None
    if spec.file is not None:
        return _target_from_file(spec, where)
    if docs is None:
        raise ConfigError(f"{where}: a target by domain or ids needs documents to take it from")
    return _target_from_docs(docs, spec, where)


def _shard_tasks(names: list[str], shards: list[str]) -> list[Task]:
    """One task per (scorer output name, shard), keyed ``<name>/<shard stem>``."""
    return [
        Task(f"{name}/{Path(s).stem}", {"scorer": name, "shard": s}, Path(s).stat().st_size)
        for name in names
        for s in shards
    ]


def run_score(
    scorers: list[ScorerConfig],
    shards: list[str],
    run_dir: Path,
    executor: Executor,
    source: str,
    out_name: str | None = None,
) -> dict[str, dict[str, Any]]:
    """Score every shard with every scorer; returns per-scorer provenance (also ``_meta.json``)."""
    if not scorers:
        return {}
    con = duckdb.connect()
    docs = con.read_parquet(shards) if shards else None
    jobs: dict[str, ScorerJob] = {}
    metas: dict[str, dict[str, Any]] = {}
    for i, sc in enumerate(scorers):
        where = f"scorers[{i}] ({sc.name}) in {source}"
        cls = get_scorer_class(sc.name, where=where)
        params = parse_params(cls, sc.params, source=where)
        key = out_name if out_name and len(scorers) == 1 else sc.name
        out_dir = run_dir / "scores" / key
        target = resolve_target(target_spec_of(params), docs, where) if cls.needs_target else None
        target_path = None
        if target is not None:
            target_path = str(out_dir / "_target.parquet")
            write_parquet(target_path, target.to_table())
        scorer = cls(params, target)
        scorer.setup()  # fail on a bad model, label or target here, before any task starts
        metas[key] = scorer.describe()
        jobs[key] = ScorerJob(sc.name, sc.params, sc.batch_rows, target_path, str(out_dir))
    con.close()
    fitting = [n for n, j in jobs.items() if get_scorer_class(j.name).needs_fit]
    if fitting:
        executor.run("fit", ScoreStep(jobs, fit=True), _shard_tasks(fitting, shards), run_dir / "_state")
        for name in fitting:
            out_dir = Path(jobs[name].out_dir)
            total = sum(np.load(out_dir / "_fit" / (Path(s).stem + ".npy")) for s in shards)
            fit_path = out_dir / "_fit.npy"
            write_npy(fit_path, np.asarray(total))
            jobs[name] = replace(jobs[name], fit_path=str(fit_path))
    tasks = _shard_tasks(list(jobs), shards)
    results = executor.run("score", ScoreStep(jobs), tasks, run_dir / "_state")
    for name, meta in metas.items():
        mine = [r for t, r in zip(tasks, results) if t.payload["scorer"] == name]
        meta["docs"] = sum(r["docs"] for r in mine)
        meta["files"] = [
            f"scores/{name}/{Path(t.payload['shard']).name}" for t in tasks if t.payload["scorer"] == name
        ]
        write_json(run_dir / "scores" / name / "_meta.json", meta)
    return metas


def score_file(
    input_cfg: InputConfig, scorer_name: str, params: dict[str, Any], out: Path, batch_rows: int = 1024
) -> dict[str, Any]:
    """``assay score``: score the documents of ``input_cfg`` (any input format) into ``out`` Parquet.
    A target by domain or ids is taken from the same input."""
    where = f"--scorer {scorer_name}"
    cls = get_scorer_class(scorer_name, where=where)
    p = parse_params(cls, params, source="--param")
    sources = expand_inputs(input_cfg)
    target = None
    if cls.needs_target:
        spec = target_spec_of(p)
        docs = None
        if spec is not None and spec.file is None:
            con = duckdb.connect()
            tables = []
            for src in sources:
                for b in read_batches(src, input_cfg, 4096, Rejects()):
                    tables.append(pa.table({"id": doc_ids(b.text)[0], "domain": b.domain, "text": b.text}))
            docs = con.from_arrow(pa.concat_tables(tables))
        target = resolve_target(spec, docs, where)
    scorer = cls(p, target)
    if cls.needs_fit:
        state = None
        for src in sources:
            for b in read_batches(src, input_cfg, batch_rows, Rejects()):
                part = scorer.fit_partial(pa.table({"text": b.text}))
                state = part if state is None else state + part
        if state is None:
            raise InputError(f"no documents to fit {scorer_name} on in {input_cfg.paths}")
        scorer.set_fitted(state)
    writer = None
    n = 0
    with atomic_path(out) as tmp:
        try:
            for src in sources:
                for b in read_batches(src, input_cfg, batch_rows, Rejects()):
                    ids, _ = doc_ids(b.text)
                    table = pa.table({"id": ids, "domain": b.domain, "text": b.text})
                    scored, _ = scorer.score_table(table, batch_rows)
                    scored = scored.append_column("source", pa.array([src.path] * len(ids), pa.string()))
                    scored = scored.append_column("source_row", pa.array(b.source_row, pa.int64()))
                    if writer is None:
                        writer = pq.ParquetWriter(tmp, scored.schema, compression="zstd")
                    writer.write_table(scored)
                    n += scored.num_rows
        finally:
            if writer is not None:
                writer.close()
        if writer is None:
            raise InputError(f"no documents to score in {input_cfg.paths}")
    return {"docs": n, "out": str(out), "scorer": scorer.describe()}


def score_run_with(
    run_dir: Path,
    name: str,
    scorer: str,
    params: dict[str, Any],
    executor: str,
    workers: int | None,
    address: str | None,
) -> Path:
    """Score an existing run's shards with one more scorer into ``RUN/scores/<name>/`` (the run's
    config is not changed), and refresh the catalog."""
    from assay.pipeline.catalog import build_catalog
    from assay.pipeline.executor import make_executor
    from assay.pipeline.fsutil import read_json

    stats = run_dir / "stats" / "shard.json"
    if not stats.is_file():
        raise InputError(f"{run_dir} is not a run directory (no stats/shard.json); run `assay select` first")
    shards = [str(run_dir / s) for s in read_json(stats)["shards"]]
    ex = make_executor(executor, workers, address)
    try:
        run_score(
            [ScorerConfig(name=scorer, params=params)], shards, run_dir, ex, f"assay {scorer}", out_name=name
        )
    finally:
        ex.close()
    build_catalog(run_dir)
    return run_dir / "scores" / name
