"""Shard a corpus: stable ids, token counts, exact dedup across the whole corpus, zstd Parquet shards.

Two stages, both per task on the executor, both with bounded memory:

1. ``ingest`` (one task per input file): read, validate, compute ``id`` = hex XXH3-128 of the UTF-8
   text, ``n_chars``, ``n_tokens``; spill runs of at most ``shard.spill_mb`` sorted by the id's first
   64 bits (``hkey``) into ``_work/ingest``. Records each spill's row-group ``hkey`` ranges.
2. ``shard`` (one task per hash bucket): the ``hkey`` space is cut into P equal ranges with
   P = ceil(total text bytes / target_mb). Bucket b reads only the row groups of every spill that
   overlap its range, restores input order (file index, row), keeps the first occurrence of each id
   (so the global first occurrence wins, whatever the number of workers), and writes
   ``shards/{b:05d}.parquet``. Equal texts share an id and hence a bucket, so dedup is exact.
"""

from __future__ import annotations

import math
import os
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import xxhash

from assay.config import InputConfig, ShardConfig
from assay.errors import InputError, ShardError
from assay.pipeline.executor import Executor, Task
from assay.pipeline.fsutil import atomic_path, np_array, write_bytes, write_parquet
from assay.pipeline.readers import RawBatch, Rejects, SourceFile, expand_inputs, read_batches
from assay.pipeline.tokenize import get_counter

SHARD_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("domain", pa.string()),
        ("text", pa.string()),
        ("n_chars", pa.int64()),
        ("n_tokens", pa.int64()),
        ("source", pa.string()),
        ("source_row", pa.int64()),
    ]
)
SPILL_SCHEMA = pa.schema([("hkey", pa.uint64()), ("file_index", pa.int32()), *SHARD_SCHEMA])
RG_TARGET_BYTES = 2 << 20


def doc_ids(text: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """ids (32 hex chars of XXH3-128 of the UTF-8 bytes) and their first 64 bits as uint64."""
    arr = text.cast(pa.string()) if text.type != pa.string() else text
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int32)[arr.offset : arr.offset + len(arr) + 1]
    data = arr.buffers()[2]
    buf = memoryview(data) if data is not None else memoryview(b"")
    digest = xxhash.xxh3_128_digest
    blob = b"".join([digest(buf[a:b]) for a, b in zip(offsets[:-1].tolist(), offsets[1:].tolist())])
    hkey = np.frombuffer(blob, dtype=">u8").reshape(-1, 2)[:, 0].astype(np.uint64)
    hexdata = blob.hex().encode("ascii")
    ids = pa.Array.from_buffers(
        pa.string(),
        len(arr),
        [None, pa.py_buffer(np.arange(0, 32 * len(arr) + 1, 32, dtype=np.int32)), pa.py_buffer(hexdata)],
    )
    return ids, hkey


def text_id(text: str) -> str:
    """The id of one text (same as ``doc_ids``)."""
    return xxhash.xxh3_128_hexdigest(text.encode("utf-8"))


def file_digest(path: str) -> str:
    """XXH3-128 of a file's bytes (of every file, in sorted order, for a folder)."""
    h = xxhash.xxh3_128()
    p = Path(path)
    files = sorted(q for q in p.rglob("*") if q.is_file()) if p.is_dir() else [p]
    for f in files:
        if p.is_dir():
            h.update(str(f.relative_to(p)).encode())
        with open(f, "rb") as fh:
            while chunk := fh.read(1 << 22):
                h.update(chunk)
    return h.hexdigest()


@dataclass
class IngestStep:
    """Stage 1: one input file → sorted spill runs."""

    input: InputConfig
    shard: ShardConfig
    work_dir: str
    rejects_dir: str

    def _table(self, b: RawBatch, src: SourceFile, counter: Any) -> pa.Table:
        ids, hkey = doc_ids(b.text)
        return pa.Table.from_arrays(
            [
                np_array(hkey),
                pa.repeat(pa.scalar(src.index, pa.int32()), len(b.text)),
                ids,
                b.domain,
                b.text,
                pc.cast(pc.utf8_length(b.text), pa.int64()),
                counter.count(b.text),
                pa.repeat(pa.scalar(src.path, pa.string()), len(b.text)),
                np_array(b.source_row.astype(np.int64)),
            ],
            schema=SPILL_SCHEMA,
        )

    def _spill(self, parts: list[pa.Table], path: Path) -> dict[str, Any]:
        """One run sorted by hkey, as an uncompressed Arrow IPC file (written at memory speed, read back
        memory-mapped) in record batches of ~RG_TARGET_BYTES, with each batch's hkey range."""
        table = pa.concat_tables(parts)
        table = table.take(pc.sort_indices(table, [("hkey", "ascending")]))
        rows = max(64, int(table.num_rows * RG_TARGET_BYTES / max(table.nbytes, 1)))
        hkey = table.column("hkey").to_numpy()
        groups = []
        with (
            atomic_path(path) as tmp,
            pa.OSFile(str(tmp), "wb") as sink,
            pa.ipc.new_file(sink, SPILL_SCHEMA) as w,
        ):
            for start in range(0, table.num_rows, rows):
                w.write_batch(table.slice(start, rows).combine_chunks().to_batches()[0])
                end = min(start + rows, table.num_rows)
                groups.append([int(hkey[start]), int(hkey[end - 1]), end - start])
        return {"path": str(path), "groups": groups}

    def __call__(self, task: Task, rank: int, world_size: int) -> dict[str, Any]:
        src: SourceFile = task.payload
        counter = get_counter(self.shard.tokenizer)
        rejects = Rejects()
        spill_bytes = int(self.shard.spill_mb * 1e6)
        parts: list[pa.Table] = []
        pending = 0
        spills: list[dict[str, Any]] = []
        docs = text_bytes = 0
        for b in read_batches(src, self.input, self.shard.batch_rows, rejects):
            t = self._table(b, src, counter)
            parts.append(t)
            nb = int(pc.sum(pc.binary_length(b.text)).as_py() or 0)
            pending += nb
            text_bytes += nb
            docs += t.num_rows
            if pending >= spill_bytes:
                spills.append(
                    self._spill(parts, Path(self.work_dir) / f"f{src.index:06d}-{len(spills):05d}.arrow")
                )
                parts, pending = [], 0
        if parts:
            spills.append(
                self._spill(parts, Path(self.work_dir) / f"f{src.index:06d}-{len(spills):05d}.arrow")
            )
        rej_path = None
        if rejects.rows:
            import json

            rej_path = str(Path(self.rejects_dir) / f"f{src.index:06d}.jsonl")
            payload = "".join(json.dumps(r, sort_keys=True, ensure_ascii=False) + "\n" for r in rejects.rows)
            write_bytes(rej_path, payload.encode("utf-8"))
        return {
            "source": src.path,
            "file_hash": file_digest(src.path),
            "docs": docs,
            "text_bytes": text_bytes,
            "rejects": len(rejects.rows),
            "rejects_file": rej_path,
            "rejected_files": sum(1 for r in rejects.rows if r["row"] is None),
            "spills": spills,
        }


@dataclass
class BucketStep:
    """Stage 2: one hkey range of every spill → dedup → one shard file."""

    out_dir: str
    compression_level: int

    def __call__(self, task: Task, rank: int, world_size: int) -> dict[str, Any]:
        lo, hi = task.payload["lo"], task.payload["hi"]
        parts = []
        for path, groups in task.payload["reads"]:
            try:
                with pa.memory_map(path) as src:
                    reader = pa.ipc.open_file(src)
                    t = pa.Table.from_batches([reader.get_batch(g) for g in groups], schema=SPILL_SCHEMA)
            except (OSError, pa.ArrowException) as e:
                raise ShardError(f"bucket {rank}: cannot read spill {path}: {e}") from e
            keep = pc.and_(
                pc.greater_equal(t["hkey"], pa.scalar(lo, pa.uint64())),
                pc.less_equal(t["hkey"], pa.scalar(hi, pa.uint64())),
            )
            parts.append(t.filter(keep))
        table = pa.concat_tables(parts) if parts else SPILL_SCHEMA.empty_table()
        table = table.take(pc.sort_indices(table, [("file_index", "ascending"), ("source_row", "ascending")]))
        n = table.num_rows
        first = (
            table.select(["id"])
            .append_column("_i", np_array(np.arange(n, dtype=np.int64)))
            .group_by("id", use_threads=False)
            .aggregate([("_i", "min")])
        )
        keep_idx = np.sort(first.column("_i_min").to_numpy())
        mask = np.zeros(n, dtype=bool)
        mask[keep_idx] = True
        dup_domains = table.column("domain").take(np_array(np.flatnonzero(~mask)))
        dups: dict[str, int] = {}
        for d in dup_domains.to_pylist():
            dups[d] = dups.get(d, 0) + 1
        out = table.take(np_array(keep_idx)).select(SHARD_SCHEMA.names).cast(SHARD_SCHEMA)
        path = Path(self.out_dir) / f"{rank:05d}.parquet"
        if out.num_rows:
            # dictionary encoding only where values repeat: trying it on ids and texts costs time for nothing
            write_parquet(
                path,
                out,
                row_group_rows=65536,
                compression_level=self.compression_level,
                use_dictionary=["domain", "source"],
            )
        domains: dict[str, dict[str, int]] = {}
        if out.num_rows:
            g = out.group_by("domain").aggregate(
                [("n_tokens", "sum"), ("n_tokens", "count"), ("n_chars", "sum")]
            )
            for d, tok, cnt, ch in zip(
                *(
                    g.column(c).to_pylist()
                    for c in ("domain", "n_tokens_sum", "n_tokens_count", "n_chars_sum")
                )
            ):
                domains[d] = {"docs": cnt, "tokens": tok, "chars": ch}
        return {
            "shard": str(path) if out.num_rows else None,
            "docs": out.num_rows,
            "duplicates": dups,
            "domains": domains,
        }


def _bucket_bounds(p: int) -> list[tuple[int, int]]:
    edges = [(1 << 64) * b // p for b in range(p + 1)]
    return [(edges[b], edges[b + 1] - 1) for b in range(p)]


def _reads_for(spills: Iterable[dict[str, Any]], lo: int, hi: int) -> list[tuple[str, list[int]]]:
    reads = []
    for sp in spills:
        groups = [g for g, (mn, mx, _) in enumerate(sp["groups"]) if mx >= lo and mn <= hi]
        if groups:
            reads.append((sp["path"], groups))
    return reads


def run_shard(
    input_cfg: InputConfig, shard_cfg: ShardConfig, run_dir: Path, executor: Executor
) -> dict[str, Any]:
    """Shard the corpus into ``run_dir/shards``; return the stats (also in ``shards/_stats.json``)."""
    sources = expand_inputs(input_cfg)
    get_counter(shard_cfg.tokenizer)  # fail on a bad tokenizer before any work
    state = run_dir / "_state"
    work = run_dir / "_work" / "ingest"
    ingest = IngestStep(input_cfg, shard_cfg, str(work), str(run_dir / "rejects"))
    tasks = [Task(f"f{s.index:06d}", s, _size(s.path)) for s in sources]
    ingested = executor.run("ingest", ingest, tasks, state)
    total_bytes = sum(r["text_bytes"] for r in ingested)
    if sum(r["docs"] for r in ingested) == 0:
        raise InputError(f"no documents were read from {input_cfg.paths} (see rejects/ for why)")
    p = max(1, math.ceil(total_bytes / (shard_cfg.target_mb * 1e6)))
    spills = [sp for r in ingested for sp in r["spills"]]
    btasks = []
    for b, (lo, hi) in enumerate(_bucket_bounds(p)):
        reads = _reads_for(spills, lo, hi)
        btasks.append(Task(f"b{b:05d}", {"lo": lo, "hi": hi, "reads": reads}, int(total_bytes / p)))
    (run_dir / "shards").mkdir(parents=True, exist_ok=True)
    bucketed = executor.run(
        "shard", BucketStep(str(run_dir / "shards"), shard_cfg.compression_level), btasks, state
    )
    if work.exists():
        shutil.rmtree(work, ignore_errors=True)
    return summarize(ingested, bucketed, run_dir)


def summarize(
    ingested: list[dict[str, Any]], bucketed: list[dict[str, Any]], run_dir: Path
) -> dict[str, Any]:
    """Per-domain counts and the file lists (paths relative to ``run_dir``)."""

    def rel(p: str) -> str:
        return os.path.relpath(p, run_dir)

    domains: dict[str, dict[str, int]] = {}
    for r in bucketed:
        for d, s in r["domains"].items():
            acc = domains.setdefault(d, {"docs": 0, "tokens": 0, "chars": 0, "duplicates": 0})
            for k in ("docs", "tokens", "chars"):
                acc[k] += s[k]
        for d, n in r["duplicates"].items():
            domains.setdefault(d, {"docs": 0, "tokens": 0, "chars": 0, "duplicates": 0})["duplicates"] += n
    return {
        "inputs": [
            {"path": r["source"], "hash": r["file_hash"], "docs_read": r["docs"], "rejects": r["rejects"]}
            for r in ingested
        ],
        "rejects": sum(r["rejects"] for r in ingested),
        "rejects_files": [rel(r["rejects_file"]) for r in ingested if r["rejects_file"]],
        "shards": [rel(r["shard"]) for r in bucketed if r["shard"]],
        "domains": dict(sorted(domains.items())),
    }


def _size(path: str) -> int:
    p = Path(path)
    if p.is_dir():
        return sum(q.stat().st_size for q in p.rglob("*") if q.is_file())
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


__all__ = ["SHARD_SCHEMA", "atomic_path", "doc_ids", "file_digest", "run_shard", "text_id"]
