from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import xxhash

from assay.config import DomainConfig, InputConfig, ShardConfig
from assay.errors import InputError
from assay.pipeline.shard import SHARD_SCHEMA, doc_ids, run_shard, text_id
from assay.pipeline.tokenize import get_counter
from conftest import CODE, PROSE, tree_bytes, write_jsonl


def shard_cfg(corpus: Path) -> InputConfig:
    return InputConfig(paths=[str(corpus / "*" / "*.jsonl*")], domain=DomainConfig(path_pattern="{domain}/*"))


def read_shards(run: Path) -> list[dict[str, Any]]:
    rows = []
    for p in sorted((run / "shards").glob("*.parquet")):
        t = pq.read_table(p)
        assert t.schema.equals(SHARD_SCHEMA)
        rows.extend(t.to_pylist())
    return rows


def test_ids_are_xxh3_128_of_utf8() -> None:
    import pyarrow as pa

    texts = ["héllo", "", "a\nb"]
    ids, hkey = doc_ids(pa.array(texts))
    assert ids.to_pylist() == [xxhash.xxh3_128_hexdigest(t.encode()) for t in texts]
    assert text_id("héllo") == ids[0].as_py()
    assert [int(h) for h in hkey] == [int(i[:16], 16) for i in ids.to_pylist()]


def test_shard_dedups_and_counts(tmp_path: Path, corpus: Path, local_executor: Any) -> None:
    stats = run_shard(shard_cfg(corpus), ShardConfig(target_mb=0.0005), tmp_path / "run", local_executor)
    rows = read_shards(tmp_path / "run")
    assert sorted(r["text"] for r in rows) == sorted(PROSE + CODE)
    assert len({r["id"] for r in rows}) == len(rows)
    assert stats["domains"]["prose"]["duplicates"] == 2 and stats["domains"]["code"]["duplicates"] == 1
    assert stats["domains"]["prose"]["docs"] == len(PROSE)
    assert len(stats["shards"]) > 1  # tiny target_mb: several shards
    for r in rows:  # first occurrence wins: the dup of PROSE[2] comes from a.jsonl (sorted first)
        if r["text"] in PROSE[2:4]:
            assert r["source"].endswith("prose/a.jsonl")
        assert r["n_tokens"] == (len(r["text"].encode()) + 3) // 4
        assert r["n_chars"] == len(r["text"])


def test_output_independent_of_workers_and_spill_size(
    tmp_path: Path, corpus: Path, local_executor: Any, ray_executor: Any
) -> None:
    cfg = shard_cfg(corpus)
    run_shard(cfg, ShardConfig(target_mb=0.0005), tmp_path / "a", local_executor)
    run_shard(cfg, ShardConfig(target_mb=0.0005, spill_mb=0.0002, batch_rows=2), tmp_path / "b", ray_executor)
    a, b = tree_bytes(tmp_path / "a"), tree_bytes(tmp_path / "b")
    assert [k for k in a if k.startswith("shards/")] == [k for k in b if k.startswith("shards/")]
    for k in a:
        if k.startswith("shards/"):
            assert a[k] == b[k], k


def test_dedup_across_workers_on_ray(tmp_path: Path, ray_executor: Any) -> None:
    # the same 5 texts in 6 files (6 ingest tasks on 2 Ray workers): each survives exactly once
    root = tmp_path / "c"
    for i in range(6):
        write_jsonl(root / f"f{i}.jsonl", [{"text": t} for t in (PROSE[:5] if i % 2 else PROSE[:5][::-1])])
    stats = run_shard(
        InputConfig(paths=[str(root / "*.jsonl")]),
        ShardConfig(target_mb=0.0003),
        tmp_path / "run",
        ray_executor,
    )
    rows = read_shards(tmp_path / "run")
    assert sorted(r["text"] for r in rows) == sorted(PROSE[:5])
    assert all(r["source"].endswith("f0.jsonl") for r in rows)
    assert stats["domains"]["default"]["duplicates"] == 25


def test_rerun_skips_done_tasks(tmp_path: Path, corpus: Path, local_executor: Any) -> None:
    run = tmp_path / "run"
    run_shard(shard_cfg(corpus), ShardConfig(target_mb=0.0005), run, local_executor)
    before = tree_bytes(run, skip=())
    mtimes = {p: p.stat().st_mtime_ns for p in (run / "shards").glob("*")}
    run_shard(shard_cfg(corpus), ShardConfig(target_mb=0.0005), run, local_executor)
    assert {p: p.stat().st_mtime_ns for p in (run / "shards").glob("*")} == mtimes
    assert tree_bytes(run, skip=()) == before


def test_no_documents_at_all(tmp_path: Path, local_executor: Any) -> None:
    p = write_jsonl(tmp_path / "d.jsonl", ['{"x": 1}'])
    with pytest.raises(InputError, match=r"no documents were read"):
        run_shard(
            InputConfig(paths=[str(p)], on_error="skip"), ShardConfig(), tmp_path / "run", local_executor
        )
    assert (tmp_path / "run" / "rejects" / "f000000.jsonl").exists()


def test_token_counters(tmp_path: Path) -> None:
    import pyarrow as pa

    texts = pa.array(["", "  two words ", "héllo wörld!"])
    assert get_counter("bytes4").count(texts).to_pylist() == [0, 3, 4]
    assert get_counter("whitespace").count(texts).to_pylist() == [0, 2, 2]
    tokenizers = pytest.importorskip("tokenizers")
    from tokenizers import Tokenizer, models, pre_tokenizers

    tok = Tokenizer(models.WordLevel({"[UNK]": 0, "two": 1, "words": 2}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.save(str(tmp_path / "tok.json"))
    counts = get_counter(f"tokenizers:{tmp_path / 'tok.json'}").count(texts)
    assert counts.to_pylist() == [0, 2, 3] and tokenizers is not None
    assert pc.sum(counts).as_py() == 5
