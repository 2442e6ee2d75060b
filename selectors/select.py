"""Document selection under a token budget, in DuckDB over the shards and one scorer's scores.

Methods (``select.method``):
- ``topk``: highest scores first (ties by id) while the running token sum stays within the budget:
  the largest prefix of the ranking whose tokens are <= budget (never over budget).
- ``gumbel``: ``topk`` on ``score / temperature + G`` with G ~ Gumbel(0, 1) drawn from a hash of
  (seed, id): sampling without replacement proportional to exp(score / temperature), as DSIR's
  importance resampling; the noise of a document does not depend on workers or order.
- ``threshold``: every document with score >= threshold (<= with ``ascending``); no budget.
- ``all``: every document.
Budgets: ``budget.fraction`` of the tokens (of each domain with ``per_domain``, else of all), or
``budget.tokens``, an absolute count (split over domains in proportion to their tokens with
``per_domain``, rounded down).
Documents a scorer used as its target set are excluded when ``exclude_targets`` is set.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import xxhash

from assay.config import SelectConfig
from assay.errors import ConfigError
from assay.pipeline.fsutil import write_parquet

SELECTION_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("domain", pa.string()),
        ("n_tokens", pa.int64()),
        ("score", pa.float64()),
        ("selected", pa.bool_()),
    ]
)


def gumbel_noise(ids: list[str], seed: int) -> np.ndarray:
    """G = -log(-log(u)), u uniform in (0, 1) from XXH3-64(id, seed): independent of order and workers."""
    bits = np.array([xxhash.xxh3_64_intdigest(i.encode(), seed=seed) for i in ids], dtype=np.uint64)
    u = ((bits >> np.uint64(11)).astype(np.float64) + 0.5) / float(1 << 53)  # 53 random bits, never 0 or 1
    return -np.log(-np.log(u))


def _budgets(cfg: SelectConfig, domain_tokens: dict[str, int]) -> dict[str, int]:
    """Token budget per domain (key "*" when ranking across domains); floors, never over."""
    total = sum(domain_tokens.values())
    f, n = cfg.budget.fraction, cfg.budget.tokens
    if cfg.per_domain:
        if f is not None:
            return {d: math.floor(f * t) for d, t in domain_tokens.items()}
        return {d: (int(n or 0) * t) // total if total else 0 for d, t in domain_tokens.items()}
    return {"*": math.floor(f * total) if f is not None else int(n or 0)}


def select_documents(
    cfg: SelectConfig, run_dir: Path, shards: list[str], exclude_ids: set[str], seed: int
) -> dict[str, Any]:
    """Write ``selection/NNNNN.parquet`` (one per domain, sorted by id) and return a per-domain summary."""
    con = duckdb.connect()
    con.sql("SET threads TO 2")
    con.register("docs_src", con.read_parquet(shards).select("id, domain, n_tokens"))
    if cfg.by is not None:
        score_files = sorted(str(p) for p in (run_dir / "scores" / cfg.by).glob("[0-9]*.parquet"))
        if not score_files:
            raise ConfigError(f"select.by {cfg.by!r}: no score files under {run_dir / 'scores' / cfg.by}")
        con.register("scores_src", con.read_parquet(score_files).select("id, score"))
        con.sql(
            "CREATE TEMP TABLE cand AS SELECT d.id, d.domain, d.n_tokens, s.score "
            "FROM docs_src d LEFT JOIN scores_src s USING (id)"
        )
        missing = con.sql("SELECT count(*) FROM cand WHERE score IS NULL").fetchall()[0]
        if missing and missing[0]:
            raise ConfigError(f"select.by {cfg.by!r}: {missing[0]} documents have no score")
    else:
        con.sql("CREATE TEMP TABLE cand AS SELECT id, domain, n_tokens, 0.0::DOUBLE AS score FROM docs_src")
    con.sql("ALTER TABLE cand ADD COLUMN eligible BOOLEAN DEFAULT true")
    if exclude_ids:
        con.register("excl", pa.table({"id": sorted(exclude_ids)}))
        con.sql("UPDATE cand SET eligible = false WHERE id IN (SELECT id FROM excl)")
    sign = 1.0 if cfg.ascending else -1.0  # rank key ascending = best first
    if cfg.method == "gumbel":
        ids = con.sql("SELECT id FROM cand ORDER BY id").fetchnumpy()["id"].tolist()
        noise = gumbel_noise(ids, seed)
        con.register("noise", pa.table({"id": ids, "g": noise}))
        con.sql(
            f"CREATE TEMP TABLE ranked AS SELECT c.*, {sign} * (c.score / {cfg.temperature!r} + n.g) "
            "AS key FROM cand c JOIN noise n USING (id)"
        )
    else:
        con.sql(f"CREATE TEMP TABLE ranked AS SELECT *, {sign} * score AS key FROM cand")
    domain_tokens = dict(
        con.sql("SELECT domain, sum(n_tokens)::BIGINT FROM ranked WHERE eligible GROUP BY domain").fetchall()
    )
    all_domains = [r[0] for r in con.sql("SELECT DISTINCT domain FROM ranked ORDER BY domain").fetchall()]
    if cfg.method in ("topk", "gumbel"):
        budgets = _budgets(cfg, domain_tokens)
        part = "PARTITION BY domain" if cfg.per_domain else ""
        con.register("budgets", pa.table({"domain": list(budgets), "budget": list(budgets.values())}))
        bjoin = "b.domain = r.domain" if cfg.per_domain else "b.domain = '*'"
        con.sql(
            "CREATE TEMP TABLE sel AS SELECT r.id, r.domain, r.n_tokens, r.score, "
            f"(r.eligible AND sum(r.n_tokens) OVER (PARTITION BY r.eligible {', r.domain' if part else ''} "
            "ORDER BY r.key, r.id ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) "
            f"<= coalesce(b.budget, 0)) AS selected FROM ranked r LEFT JOIN budgets b ON {bjoin}"
        )
    elif cfg.method == "threshold":
        op = "<=" if cfg.ascending else ">="
        con.sql(
            f"CREATE TEMP TABLE sel AS SELECT id, domain, n_tokens, score, "
            f"(eligible AND score {op} {float(cfg.threshold or 0)!r}) AS selected FROM ranked"
        )
        budgets = {}
    else:
        con.sql(
            "CREATE TEMP TABLE sel AS SELECT id, domain, n_tokens, score, eligible AS selected FROM ranked"
        )
        budgets = {}
    out_dir = run_dir / "selection"
    summary: dict[str, Any] = {}
    for i, dom in enumerate(all_domains):
        t = con.sql(
            "SELECT id, domain, n_tokens, score, selected FROM sel WHERE domain = $d ORDER BY id",
            params={"d": dom},
        ).to_arrow_table()
        t = t.cast(SELECTION_SCHEMA)
        rel = f"selection/{i:05d}.parquet"
        write_parquet(out_dir / f"{i:05d}.parquet", t, row_group_rows=65536)
        sel = t.filter(t.column("selected"))
        summary[dom] = {
            "file": rel,
            "docs": t.num_rows,
            "tokens": int(pa.compute.sum(t.column("n_tokens")).as_py() or 0),
            "excluded_targets": int(
                con.sql(
                    "SELECT count(*) FROM ranked WHERE domain = $d AND NOT eligible", params={"d": dom}
                ).fetchall()[0][0]
            ),  # type: ignore[index]
            "selected_docs": sel.num_rows,
            "selected_tokens": int(pa.compute.sum(sel.column("n_tokens")).as_py() or 0),
            "budget_tokens": budgets.get(dom, budgets.get("*")) if budgets else None,
        }
    con.close()
    return summary
