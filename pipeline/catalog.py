"""The run catalog: ``RUN/catalog.duckdb`` holds views over the run's Parquet files, with paths
relative to the run directory (opened with ``file_search_path`` set to it, so the run can move).

Views: ``docs`` (shards), ``scores_<scorer>`` (one per scorer), ``selection``, ``rejects``."""

from __future__ import annotations

import re
from pathlib import Path

import duckdb

from assay.errors import AssayError
from assay.pipeline.fsutil import atomic_path


def _ident(name: str) -> str:
    return re.sub(r"[^0-9a-zA-Z_]", "_", name)


def view_sql(run_dir: Path) -> dict[str, str]:
    views = {}
    if any((run_dir / "shards").glob("*.parquet")):
        views["docs"] = "SELECT * FROM read_parquet('shards/*.parquet')"
    for d in sorted((run_dir / "scores").glob("*")):
        if any(d.glob("[0-9]*.parquet")):
            views[f"scores_{_ident(d.name)}"] = (
                f"SELECT * FROM read_parquet('scores/{d.name}/[0-9]*.parquet')"
            )
    if any((run_dir / "selection").glob("*.parquet")):
        views["selection"] = "SELECT * FROM read_parquet('selection/*.parquet')"
    if any((run_dir / "rejects").glob("*.jsonl")):
        views["rejects"] = (
            "SELECT * FROM read_json('rejects/*.jsonl', columns={source: 'VARCHAR', row: 'BIGINT', "
            "reason: 'VARCHAR', domain: 'VARCHAR'})"
        )
    return views


def build_catalog(run_dir: Path) -> Path:
    target = run_dir / "catalog.duckdb"
    with atomic_path(target) as tmp:
        tmp.unlink()
        con = duckdb.connect(str(tmp))
        con.execute(f"SET file_search_path = '{run_dir.resolve()}'")
        for name, sql in view_sql(run_dir).items():
            con.execute(f"CREATE VIEW {name} AS {sql}")
        con.execute("CHECKPOINT")
        con.close()
        wal = Path(str(tmp) + ".wal")
        if wal.exists():
            wal.unlink()
    return target


def open_catalog(run_dir: Path) -> duckdb.DuckDBPyConnection:
    db = run_dir / "catalog.duckdb"
    if not db.is_file():
        raise AssayError(
            f"{run_dir} has no catalog.duckdb; is it a run directory? (run `assay select` first)"
        )
    con = duckdb.connect(str(db), read_only=True)
    con.execute(f"SET file_search_path = '{run_dir.resolve()}'")
    return con


def query(run_dir: Path, sql: str) -> duckdb.DuckDBPyRelation:
    con = open_catalog(run_dir)
    try:
        return con.sql(sql)
    except duckdb.Error as e:
        raise AssayError(f"query failed: {e}") from e
