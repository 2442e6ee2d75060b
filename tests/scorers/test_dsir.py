from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import regex

from assay.config import load_config
from assay.errors import ConfigError
from assay.pipeline.run import run_select
from assay.scorers.base import TargetSet, TargetSpec
from assay.scorers.dsir import DSIRParams, DSIRScorer
from conftest import CODE, PROSE, make_config


def ref_counts(text: str, buckets: int, n: int = 2) -> np.ndarray:
    """Straight from the DSIR paper/package: WordPunct words of the lowercased text, n-grams, sha256."""
    words = regex.findall(r"\w+|[^\w\s]+", text.lower())
    feats = words + [" ".join(words[i : i + k]) for k in range(2, n + 1) for i in range(len(words) - k + 1)]
    c = np.zeros(buckets, dtype=np.int64)
    for f in feats:
        c[int(hashlib.sha256(f.encode("utf-8")).hexdigest(), 16) % buckets] += 1
    return c


def ref_scores(pool: list[str], target: list[str], buckets: int) -> list[float]:
    raw = sum(ref_counts(t, buckets) for t in pool)
    tgt = sum(ref_counts(t, buckets) for t in target)
    log_diff = np.log(tgt / tgt.sum() + 1e-8) - np.log(raw / raw.sum() + 1e-8)
    return [float(np.dot(log_diff, ref_counts(t, buckets))) for t in pool]


def make(target: list[str], buckets: int = 64) -> DSIRScorer:
    ts = TargetSet(tuple(f"t{i}" for i in range(len(target))), tuple(target))
    return DSIRScorer(DSIRParams(target=TargetSpec(ids=["t"]), buckets=buckets), ts)


@pytest.mark.parametrize("buckets", [16, 10000])
def test_matches_reference(buckets: int) -> None:
    pool = PROSE + CODE + ["", "Ünïcode wörds, and punctuation!!", "نام\u200cخانوادگی=ندا"]
    s = make(CODE[:2], buckets)
    s.set_fitted(sum(s.fit_partial(pa.table({"text": [t]})) for t in pool))
    out, _ = s.score_table(pa.table({"id": [str(i) for i in range(len(pool))], "text": pool}))
    assert np.allclose(
        out.column("score").to_pylist(), ref_scores(pool, CODE[:2], buckets), rtol=1e-12, atol=1e-9
    )


def test_tokenizer_is_nltk_wordpunct() -> None:
    nltk = pytest.importorskip("nltk.tokenize")
    from assay.scorers.dsir import _WORDPUNCT

    text = "Don't stop-believing: it's 3.14 o'clock... #tags & émojis نام\u200cخانوادگی=ندا"
    assert _WORDPUNCT.findall(text.lower()) == nltk.WordPunctTokenizer().tokenize(text.lower())
    assert re.findall(r"\w+|[^\w\s]+", "a\u200cb") != _WORDPUNCT.findall("a\u200cb")  # why `regex`, not `re`


def test_unfitted_and_bad_state() -> None:
    s = make(CODE[:2])
    with pytest.raises(ConfigError, match="was not fitted"):
        s.score_table(pa.table({"id": ["a"], "text": ["x"]}))
    with pytest.raises(ConfigError, match=r"raw counts have shape \(3,\), expected \(64,\)"):
        s.set_fitted(np.zeros(3))


def test_fit_pass_over_shards_in_a_run(tmp_path: Path, corpus: Path, local_executor: Any) -> None:
    cfg = load_config(
        make_config(
            tmp_path,
            corpus,
            scorers=[{"name": "dsir", "buckets": 256, "target": {"domain": "code"}}],
            select={"by": "dsir", "method": "gumbel", "budget": {"fraction": 0.5}},
        )
    )
    run = tmp_path / "run"
    run_select(cfg, run, local_executor)
    docs = pa.concat_tables([pq.read_table(p) for p in sorted((run / "shards").glob("*.parquet"))])
    scores = pa.concat_tables(
        [pq.read_table(p) for p in sorted((run / "scores" / "dsir").glob("0*.parquet"))]
    )
    text = dict(zip(docs["id"].to_pylist(), docs["text"].to_pylist()))
    target = [text[i] for i in pq.read_table(run / "scores" / "dsir" / "_target.parquet")["id"].to_pylist()]
    pool = [text[i] for i in scores["id"].to_pylist()]
    assert np.allclose(scores["score"].to_pylist(), ref_scores(pool, target, 256), rtol=1e-12, atol=1e-9)
    sel = pa.concat_tables([pq.read_table(p) for p in (run / "selection").glob("*.parquet")])
    assert not set(sel.filter(sel["selected"])["id"].to_pylist()) & set(target)  # targets excluded


def test_agrees_with_the_data_selection_package(tmp_path: Path) -> None:
    pytest.importorskip("nltk")
    ds = pytest.importorskip("data_selection")
    import json

    pool = PROSE + CODE
    for name, texts in (("pool", pool), ("target", CODE[:3])):
        (tmp_path / f"{name}.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    ref = ds.HashedNgramDSIR(
        [str(tmp_path / "pool.jsonl")],
        [str(tmp_path / "target.jsonl")],
        cache_dir=str(tmp_path / "cache"),
        num_proc=1,
        num_buckets=10000,
    )
    ref.fit_importance_estimator(num_tokens_to_fit="all")
    ref.compute_importance_weights()
    expected = np.load(tmp_path / "cache" / "log_importance_weights" / "0.npy")
    s = make(CODE[:3], 10000)
    s.set_fitted(s.fit_partial(pa.table({"text": pool})))
    out, _ = s.score_table(pa.table({"id": [str(i) for i in range(len(pool))], "text": pool}))
    assert np.allclose(out.column("score").to_numpy(), expected, rtol=1e-12, atol=1e-9)
