from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from assay.config import BudgetConfig, SelectConfig
from assay.errors import ConfigError
from assay.selectors.select import gumbel_noise, select_documents

rng = np.random.default_rng(0)
N = 60
IDS = [f"{i:032x}" for i in rng.integers(0, 2**62, N)]
DOMS = ["a" if i % 3 else "b" for i in range(N)]
TOKENS = rng.integers(1, 50, N).tolist()
SCORES = rng.normal(size=N).round(3).tolist()  # rounding creates ties, broken by id


@pytest.fixture
def run(tmp_path: Path) -> tuple[Path, list[str]]:
    (tmp_path / "shards").mkdir()
    (tmp_path / "scores" / "s").mkdir(parents=True)
    shards = []
    for k in range(3):  # three shards, as a run has
        sl = slice(k * 20, (k + 1) * 20)
        p = tmp_path / "shards" / f"{k:05d}.parquet"
        pq.write_table(pa.table({"id": IDS[sl], "domain": DOMS[sl], "n_tokens": TOKENS[sl]}), p)
        pq.write_table(
            pa.table({"id": IDS[sl], "score": SCORES[sl]}), tmp_path / "scores" / "s" / f"{k:05d}.parquet"
        )
        shards.append(str(p))
    return tmp_path, shards


def selected(run: Path) -> set[str]:
    t = pa.concat_tables([pq.read_table(p) for p in sorted((run / "selection").glob("*.parquet"))])
    return set(t.filter(t["selected"])["id"].to_pylist())


def ref_topk(keys: list[float], budget_of: dict[str, int], per_domain: bool, excl: set[str]) -> set[str]:
    out: set[str] = set()
    groups = sorted(set(DOMS)) if per_domain else ["*"]
    for g in groups:
        idx = [i for i in range(N) if (not per_domain or DOMS[i] == g) and IDS[i] not in excl]
        idx.sort(key=lambda i: (keys[i], IDS[i]))
        used = 0
        for i in idx:
            if used + TOKENS[i] > budget_of[g]:
                break
            used += TOKENS[i]
            out.add(IDS[i])
    return out


def dom_tokens(excl: set[str]) -> dict[str, int]:
    return {d: sum(t for i, t in enumerate(TOKENS) if DOMS[i] == d and IDS[i] not in excl) for d in "ab"}


@pytest.mark.parametrize("per_domain", [True, False])
def test_topk_fraction(run: tuple[Path, list[str]], per_domain: bool) -> None:
    root, shards = run
    excl = set(IDS[:3])
    cfg = SelectConfig(by="s", budget=BudgetConfig(fraction=0.3), per_domain=per_domain)
    summary = select_documents(cfg, root, shards, excl, seed=0)
    toks = dom_tokens(excl)
    budgets = (
        {d: math.floor(0.3 * t) for d, t in toks.items()}
        if per_domain
        else {"*": math.floor(0.3 * sum(toks.values()))}
    )
    assert selected(root) == ref_topk([-s for s in SCORES], budgets, per_domain, excl)
    assert summary["a"]["excluded_targets"] == sum(1 for i in IDS[:3] if DOMS[IDS.index(i)] == "a")


def test_topk_absolute_tokens_ascending(run: tuple[Path, list[str]]) -> None:
    root, shards = run
    cfg = SelectConfig(by="s", budget=BudgetConfig(tokens=200), ascending=True)
    select_documents(cfg, root, shards, set(), seed=0)
    toks = dom_tokens(set())
    budgets = {d: 200 * t // sum(toks.values()) for d, t in toks.items()}
    assert selected(root) == ref_topk(SCORES, budgets, True, set())


def test_gumbel_is_seeded_topk_on_noisy_scores(run: tuple[Path, list[str]]) -> None:
    root, shards = run
    cfg = SelectConfig(method="gumbel", by="s", budget=BudgetConfig(fraction=0.5), temperature=0.5)
    select_documents(cfg, root, shards, set(), seed=7)
    g = dict(zip(sorted(IDS), gumbel_noise(sorted(IDS), 7)))
    keys = [-(SCORES[i] / 0.5 + g[IDS[i]]) for i in range(N)]
    budgets = {d: math.floor(0.5 * t) for d, t in dom_tokens(set()).items()}
    first = selected(root)
    assert first == ref_topk(keys, budgets, True, set())
    select_documents(cfg, root, shards, set(), seed=8)
    assert selected(root) != first


def test_gumbel_noise_distribution() -> None:
    ids = [f"{i:032x}" for i in range(20000)]
    g = gumbel_noise(ids, 1)
    assert abs(g.mean() - 0.5772) < 0.03 and abs(g.var() - math.pi**2 / 6) < 0.06
    assert np.array_equal(gumbel_noise(ids[::-1], 1)[::-1], g)


def test_threshold_and_all(run: tuple[Path, list[str]]) -> None:
    root, shards = run
    select_documents(SelectConfig(method="threshold", by="s", threshold=0.2), root, shards, set(), 0)
    assert selected(root) == {IDS[i] for i in range(N) if SCORES[i] >= 0.2}
    select_documents(SelectConfig(method="all"), root, shards, {IDS[0]}, 0)
    assert selected(root) == set(IDS[1:])


def test_missing_scores(run: tuple[Path, list[str]]) -> None:
    root, shards = run
    with pytest.raises(ConfigError, match=r"select\.by 'nope': no score files"):
        select_documents(SelectConfig(by="nope"), root, shards, set(), 0)
    pq.write_table(pa.table({"id": IDS[:5], "score": SCORES[:5]}), root / "scores" / "s" / "00000.parquet")
    with pytest.raises(ConfigError, match=r"select\.by 's': 15 documents have no score"):
        select_documents(SelectConfig(by="s"), root, shards, set(), 0)
