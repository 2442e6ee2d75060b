from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from assay.cli import main
from assay.errors import ConfigError, InputError
from assay.scorers.base import TargetSet, TargetSpec, sample_target
from assay.scorers.compression import CompressionParams, CompressionScorer, gzip_len
from conftest import CODE, PROSE, write_jsonl

TARGET = CODE[:4]
POOL = PROSE + CODE[4:] + ["", "x", "def f(x):\n    return x\n" * 2000]


def reference_alignment(s: str, targets: list[str], level: int = 9) -> float:
    """The ZIP-FIT formula, straight from the paper, with gzip.compress on every pair."""

    def c(x: str) -> int:
        return len(gzip.compress(x.encode("utf-8"), compresslevel=level))

    return float(np.mean([1 - (c(s + t) - min(c(s), c(t))) / max(c(s), c(t)) for t in targets]))


def scorer(mode: str = "exact", targets: list[str] = TARGET, **kw: object) -> CompressionScorer:
    ts = TargetSet(tuple(f"t{i}" for i in range(len(targets))), tuple(targets))
    return CompressionScorer(CompressionParams(target=TargetSpec(ids=["t"]), mode=mode, **kw), ts)  # type: ignore[arg-type]


def table(texts: list[str]) -> pa.Table:
    return pa.table({"id": [f"d{i}" for i in range(len(texts))], "text": texts})


@pytest.mark.parametrize("level", [1, 6, 9])
def test_exact_matches_the_formula(level: int) -> None:
    out, stats = scorer(level=level).score_table(table(POOL), batch_rows=3)
    ref = [reference_alignment(s, TARGET, level) for s in POOL]
    assert out.column("score").to_pylist() == ref  # bit for bit, not approximately
    assert stats["docs"] == len(POOL)


def test_gzip_len_is_gzip_compress_length() -> None:
    for s in ["", "a", PROSE[0] * 50]:
        assert gzip_len(s.encode(), 9) == len(gzip.compress(s.encode(), compresslevel=9))


def test_threads_and_reruns_give_identical_bytes() -> None:
    a = scorer().score_table(table(POOL))[0]
    b = scorer(threads=2).score_table(table(POOL))[0]
    assert a.equals(b)


def test_empty_document_has_a_defined_score() -> None:
    out, _ = scorer().score_table(table(["", PROSE[0]]))
    s = out.column("score").to_pylist()
    assert np.isfinite(s).all() and s[0] == reference_alignment("", TARGET)


def test_code_target_prefers_code() -> None:
    out, _ = scorer(targets=CODE[:3]).score_table(table(PROSE[:3] + CODE[3:]))
    s = out.column("score").to_pylist()
    assert min(s[3:]) > max(s[:3])


def test_fast_mode_is_the_formula_on_a_target_subsample() -> None:
    out, _ = scorer("fast", fast_targets=2, fast_level=1).score_table(table(POOL))
    assert out.column("score").to_pylist() == [reference_alignment(s, TARGET[:2], 1) for s in POOL]


def test_target_sampling_is_seeded_and_capped() -> None:
    ids = [f"id{i:02d}" for i in range(50)]
    a = sample_target(ids, ids, TargetSpec(ids=["x"], sample=10, seed=1), "t")
    b = sample_target(list(reversed(ids)), list(reversed(ids)), TargetSpec(ids=["x"], sample=10, seed=1), "t")
    c = sample_target(ids, ids, TargetSpec(ids=["x"], sample=10, seed=2), "t")
    assert a == b and len(a.ids) == 10 and list(a.ids) == sorted(a.ids) and a != c
    with pytest.raises(InputError, match="the target set is empty"):
        sample_target([], [], TargetSpec(ids=["x"]), "t")


def test_long_targets_are_reported() -> None:
    s = scorer(targets=["y" * 40000, "short"])
    assert s.describe()["targets_over_window"] == 1


def test_bad_params() -> None:
    with pytest.raises(ConfigError, match=r"level must be in 0\.\.9"):
        CompressionParams(level=11).validate()
    with pytest.raises(ConfigError, match="needs a target set"):
        CompressionScorer(CompressionParams(), None)


def test_assay_score_cli(tmp_path: Path) -> None:
    data = write_jsonl(
        tmp_path / "pool.jsonl", [{"text": t, "d": "p" if t in PROSE else "c"} for t in PROSE + CODE]
    )
    tgt = write_jsonl(tmp_path / "target.jsonl", [{"body": t} for t in TARGET])
    out = tmp_path / "scores.parquet"
    res = CliRunner().invoke(
        main,
        [
            "score",
            "--scorer",
            "compression",
            "--param",
            f"target.file={tgt}",
            "--param",
            "target.text_field=body",
            "--param",
            "level=6",
            str(data),
            "--out",
            str(out),
        ],
    )
    assert res.exit_code == 0, res.output
    t = pq.read_table(out)
    assert t.column_names == ["id", "score", "source", "source_row"]
    assert t.column("score").to_pylist() == [
        reference_alignment(s, sorted(TARGET, key=_tid), 6) for s in PROSE + CODE
    ]
    res = CliRunner().invoke(
        main,
        [
            "score",
            "--scorer",
            "compression",
            "--param",
            "target.domain=c",
            "--domain-field",
            "d",
            str(data),
            "--out",
            str(out),
        ],
    )
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(
        main,
        [
            "score",
            "--scorer",
            "compression",
            "--param",
            "target.domain=zzz",
            "--domain-field",
            "d",
            str(data),
            "--out",
            str(tmp_path / "none.parquet"),
        ],
    )
    assert res.exit_code == 3 and "the target set is empty (no documents of domain 'zzz')" in res.output
    assert not (tmp_path / "none.parquet").exists()
    res = CliRunner().invoke(main, ["score", "--scorer", "compresion", str(data), "--out", str(out)])
    assert res.exit_code == 2 and "did you mean 'compression'" in res.output


def _tid(t: str) -> str:
    from assay.pipeline.shard import text_id

    return text_id(t)
