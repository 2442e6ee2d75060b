"""Exports of a manifest that trainers read directly.

The training stream is the same everywhere (``evaluate.phase_streams``, kind ``manifest``): phase by
phase, each domain's selected documents in a seeded order, cycled when the schedule repeats a
domain, until the phase's token allocation of the domain is met (overshooting by less than one
document), the domains interleaved by a seeded draw proportional to their remaining tokens.

- ``parquet``: the stream in training order as Parquet files, and ``index.json`` with the row range
  of each phase.
- ``hf``: ``load_manifest(path, phase=None)`` -> ``datasets.IterableDataset`` of the stream (exact
  token allocation), or ``mode="sample"``: per phase, ``datasets.interleave_datasets`` over the
  domains with sampling probabilities converted from token weights (p_i ∝ w_i / mean tokens per
  document of i), stopped when the phase's tokens are reached.
- ``megatron``: per domain a tokenized ``<domain>.bin``/``.idx`` in Megatron's indexed-dataset format
  (MMIDIDX, version 1), and per phase the ``--data-path`` blend ("w1 prefix1 w2 prefix2 ...") with
  the iteration at which the phase starts (Megatron takes a static blend per launch).
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from assay.errors import ConfigError, InputError
from assay.pipeline.evaluate import RunDocs, phase_streams
from assay.pipeline.fsutil import atomic_path, np_array, read_json, write_json, write_parquet

STREAM_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("domain", pa.string()),
        ("text", pa.string()),
        ("n_tokens", pa.int64()),
        ("phase", pa.int32()),
    ]
)


def _load(manifest: Path) -> dict[str, Any]:
    if not manifest.is_file():
        raise InputError(f"manifest {manifest} does not exist")
    return read_json(manifest)


def stream_tables(
    manifest: Path, seed: int | None = None, batch: int = 2048
) -> Iterator[tuple[int, pa.Table]]:
    """(phase index, rows) in training order, in batches: one DuckDB join of the phase's id order
    with the shards, streamed (one scan of the shards per phase, repeated documents included)."""
    m = _load(manifest)
    phases = phase_streams(manifest, [], set(), m["seed"] if seed is None else seed)["manifest"]
    docs = RunDocs(manifest.parent)
    for k, ids in enumerate(phases):
        order = pa.table(
            {"pos": np_array(np.arange(len(ids), dtype=np.int64)), "id": pa.array(ids, pa.string())}
        )
        docs.con.register("stream_order", order)
        reader = docs.con.sql(
            f"SELECT d.id, d.domain, d.text, d.n_tokens, {k}::INTEGER AS phase FROM stream_order s "
            "JOIN docs d USING (id) ORDER BY s.pos"
        ).fetch_arrow_reader(batch)
        for rb in reader:
            if rb.num_rows:
                yield k, pa.Table.from_batches([rb]).cast(STREAM_SCHEMA)
        docs.con.unregister("stream_order")


def export_parquet(manifest: Path, out: Path, rows_per_file: int = 50_000) -> dict[str, Any]:
    """The stream as ``out/part-NNNNN.parquet`` in training order plus ``out/index.json``."""
    files: list[dict[str, Any]] = []
    phases: list[dict[str, Any]] = []
    pending: list[pa.Table] = []
    n_pending = row = 0

    def flush(final: bool = False) -> None:
        """Write files of exactly ``rows_per_file`` rows (the last one shorter), whatever the batching."""
        nonlocal pending, n_pending
        while pending and (n_pending >= rows_per_file or final):
            table = pa.concat_tables(pending)
            head, rest = table.slice(0, rows_per_file), table.slice(rows_per_file)
            name = f"part-{len(files):05d}.parquet"
            write_parquet(out / name, head, row_group_rows=8192)
            files.append({"file": name, "rows": head.num_rows})
            pending, n_pending = ([rest], rest.num_rows) if rest.num_rows else ([], 0)

    for k, t in stream_tables(manifest):
        while len(phases) <= k:
            phases.append({"phase": len(phases), "first_row": row, "end_row": row, "tokens": 0})
        phases[k]["end_row"] += t.num_rows
        phases[k]["tokens"] += int(pa.compute.sum(t.column("n_tokens")).as_py() or 0)
        row += t.num_rows
        pending.append(t)
        n_pending += t.num_rows
        if n_pending >= rows_per_file:
            flush()
    flush(final=True)
    index = {
        "manifest": str(manifest.resolve()),
        "rows": row,
        "files": files,
        "phases": phases,
        "columns": STREAM_SCHEMA.names,
    }
    write_json(out / "index.json", index)
    return index


def sampling_probabilities(phase: dict[str, Any], mean_tokens: dict[str, float]) -> dict[str, float]:
    """Per-document sampling probabilities that give the phase's token weights: p_i ∝ w_i / t_i."""
    raw = {d: w / mean_tokens[d] for d, w in phase["weights"].items() if w > 0 and mean_tokens.get(d)}
    z = math.fsum(raw.values())
    return {d: v / z for d, v in sorted(raw.items())}


def load_manifest(
    path: str | Path, phase: int | None = None, mode: str = "exact", seed: int | None = None
) -> Any:
    """A ``datasets.IterableDataset`` of the manifest's training stream (all phases, or ``phase``)."""
    import datasets

    manifest = Path(path)
    m = _load(manifest)
    n = len(m["schedule"]["phases"])
    if phase is not None and not 0 <= phase < n:
        raise ConfigError(f"phase {phase} does not exist; the manifest has phases 0..{n - 1}")
    features = datasets.Features(
        {
            "id": datasets.Value("string"),
            "domain": datasets.Value("string"),
            "text": datasets.Value("string"),
            "n_tokens": datasets.Value("int64"),
            "phase": datasets.Value("int32"),
        }
    )
    if mode == "exact":

        def gen(manifest_path: str, only: int | None) -> Iterator[dict[str, Any]]:
            for k, t in stream_tables(Path(manifest_path), seed):
                if only is None or k == only:
                    yield from t.to_pylist()

        return datasets.IterableDataset.from_generator(
            gen, features=features, gen_kwargs={"manifest_path": str(manifest), "only": phase}
        )
    if mode != "sample":
        raise ConfigError(f"mode {mode!r}: expected exact or sample")
    return _sampled(manifest, m, phase, features, m["seed"] if seed is None else seed)


def _sampled(manifest: Path, m: dict[str, Any], phase: int | None, features: Any, seed: int) -> Any:
    import datasets

    return datasets.IterableDataset.from_generator(
        _sampled_rows,
        features=features,
        gen_kwargs={"manifest_path": str(manifest), "only": phase, "seed": seed},
    )


def _sampled_rows(manifest_path: str, only: int | None, seed: int) -> Iterator[dict[str, Any]]:
    """Rows of ``mode="sample"``: per phase, interleave_datasets over the domains' selected documents
    (cycled) with probabilities from ``sampling_probabilities``, until the phase's tokens are reached."""
    import datasets

    manifest = Path(manifest_path)
    m = _load(manifest)
    docs = RunDocs(manifest.parent)
    per_domain = docs.selected(list(m["domains"]))
    mean_tokens = {
        d: m["domains"][d]["selected_tokens"] / max(1, m["domains"][d]["selected_docs"]) for d in per_domain
    }
    meta = docs.meta()
    dom = dict(zip(meta.column("id").to_pylist(), meta.column("domain").to_pylist()))
    ntok = dict(zip(meta.column("id").to_pylist(), meta.column("n_tokens").to_pylist()))
    id_features = datasets.Features({"id": datasets.Value("string")})
    for ph in m["schedule"]["phases"]:
        k = ph["index"]
        if only is not None and k != only:
            continue
        probs = sampling_probabilities(ph, mean_tokens)
        parts = [
            datasets.IterableDataset.from_generator(
                _cycle, gen_kwargs={"ids": per_domain[d]}, features=id_features
            )
            for d in probs
        ]
        mixed = datasets.interleave_datasets(
            parts, probabilities=list(probs.values()), seed=seed + k, stopping_strategy="all_exhausted"
        )
        got = 0
        batch: list[str] = []
        for ex in mixed:
            batch.append(ex["id"])
            got += ntok[ex["id"]]
            if got >= ph["tokens"]:
                break
        texts = docs.texts(batch)
        for i in batch:
            yield {"id": i, "domain": dom[i], "text": texts[i], "n_tokens": ntok[i], "phase": k}


def _cycle(ids: list[str]) -> Iterator[dict[str, str]]:
    while True:
        for i in ids:
            yield {"id": i}


# ----------------------------------------------------------------------------- Megatron

MEGATRON_DTYPES: dict[Any, int] = {
    np.uint8: 1,
    np.int8: 2,
    np.int16: 3,
    np.int32: 4,
    np.int64: 5,
    np.float64: 6,
    np.float32: 7,
    np.uint16: 8,
}
MAGIC = b"MMIDIDX\x00\x00"


def write_indexed_dataset(prefix: Path, docs: list[np.ndarray], dtype: type) -> None:
    """``prefix.bin`` (the token arrays back to back) and ``prefix.idx``: magic, version 1 (<Q),
    dtype code (<B), sequence count (<Q), document count (<Q), sequence lengths (int32), sequence
    byte pointers (int64), document indices (int64; one sequence per document: 0..n)."""
    lengths = np.array([len(d) for d in docs], dtype=np.int32)
    itemsize = np.dtype(dtype).itemsize
    pointers = np.zeros(len(docs), dtype=np.int64)
    if len(docs) > 1:
        pointers[1:] = np.cumsum(lengths[:-1].astype(np.int64) * itemsize)
    doc_idx = np.arange(len(docs) + 1, dtype=np.int64)
    with atomic_path(prefix.with_suffix(".bin")) as tmp, open(tmp, "wb") as f:
        for d in docs:
            f.write(np.asarray(d, dtype=dtype).tobytes(order="C"))
    with atomic_path(prefix.with_suffix(".idx")) as tmp, open(tmp, "wb") as f:
        f.write(MAGIC)
        f.write(struct.pack("<Q", 1))
        f.write(struct.pack("<B", MEGATRON_DTYPES[dtype]))
        f.write(struct.pack("<Q", len(docs)))
        f.write(struct.pack("<Q", len(doc_idx)))
        f.write(lengths.tobytes(order="C"))
        f.write(pointers.tobytes(order="C"))
        f.write(doc_idx.tobytes(order="C"))


def export_megatron(
    manifest: Path, out: Path, tokenizer: str = "bytes", seq_length: int = 2048, global_batch_size: int = 256
) -> dict[str, Any]:
    """Tokenized indexed datasets per domain, one blend per phase and the iteration each phase starts.

    Iterations: the manifest's token budget is converted to the export tokenizer's tokens with the
    ratio measured on the exported documents; train_iters = ceil(tokens / (seq_length × global
    batch)); phase k starts at floor(start_k × train_iters)."""

    from assay.pipeline.models import make_tokenizer

    m = _load(manifest)
    tok = make_tokenizer(tokenizer)
    dtype = np.uint16 if tok.vocab_size < 65500 else np.int32
    docs = RunDocs(manifest.parent)
    out.mkdir(parents=True, exist_ok=True)
    prefixes, ratio_num, ratio_den = {}, 0, 0
    selected = docs.selected(sorted(m["domains"]))
    for d, info in sorted(m["domains"].items()):
        if not info["selected_docs"]:
            continue
        ids = selected[d]
        texts = docs.texts(ids)
        arrays = [np.array([*tok.encode(texts[i]), tok.eos], dtype=dtype) for i in ids]
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in d)
        prefix = out / f"{safe}_text_document"
        write_indexed_dataset(prefix, arrays, dtype)
        prefixes[d] = prefix.name
        ratio_num += sum(len(a) for a in arrays)
        ratio_den += info["selected_tokens"]
    ratio = ratio_num / max(1, ratio_den)
    total = m["schedule"]["total_tokens"] * ratio
    train_iters = max(1, math.ceil(total / (seq_length * global_batch_size)))
    blends = []
    for ph in m["schedule"]["phases"]:
        parts = [f"{w:.8f} {prefixes[d]}" for d, w in sorted(ph["weights"].items()) if w > 0]
        blends.append(
            {
                "phase": ph["index"],
                "start_iteration": math.floor(ph["start"] * train_iters),
                "end_iteration": math.floor(ph["end"] * train_iters)
                if ph["index"] < len(m["schedule"]["phases"]) - 1
                else train_iters,
                "data_path": " ".join(parts),
            }
        )
    info = {
        "tokenizer": tok.spec,
        "dtype": np.dtype(dtype).name,
        "seq_length": seq_length,
        "global_batch_size": global_batch_size,
        "tokens_per_manifest_token": ratio,
        "train_iters": train_iters,
        "prefixes": prefixes,
        "phases": blends,
    }
    write_json(out / "blends.json", info)
    lines = [
        f"# phase {b['phase']}: iterations [{b['start_iteration']}, {b['end_iteration']})\n"
        f"--data-path {b['data_path']}\n"
        for b in blends
    ]
    (out / "blends.txt").write_text("".join(lines))
    return info


def read_indexed_dataset(prefix: Path) -> list[np.ndarray]:
    """An independent reader of the format written above (used by the tests and for checks)."""
    raw = prefix.with_suffix(".idx").read_bytes()
    if raw[:9] != MAGIC:
        raise InputError(f"{prefix}.idx: bad magic {raw[:9]!r}")
    (version,) = struct.unpack_from("<Q", raw, 9)
    (code,) = struct.unpack_from("<B", raw, 17)
    n_seq, n_doc = struct.unpack_from("<QQ", raw, 18)
    if version != 1:
        raise InputError(f"{prefix}.idx: version {version}, expected 1")
    dtype = {v: k for k, v in MEGATRON_DTYPES.items()}[code]
    off = 34
    lengths = np.frombuffer(raw, np.int32, n_seq, off)
    pointers = np.frombuffer(raw, np.int64, n_seq, off + 4 * n_seq)
    np.frombuffer(raw, np.int64, n_doc, off + 12 * n_seq)  # document indices
    data = prefix.with_suffix(".bin").read_bytes()
    return [np.frombuffer(data, dtype, int(n), int(p)) for n, p in zip(lengths, pointers)]


def export(manifest: Path, fmt: str, out: Path, **kw: Any) -> dict[str, Any]:
    if fmt == "parquet":
        return export_parquet(manifest, out)
    if fmt == "megatron":
        return export_megatron(manifest, out, **kw)
    if fmt == "hf":
        ds = load_manifest(manifest)
        n = sum(1 for _ in ds)
        info = {"rows": n, "usage": f"assay.load_manifest({str(manifest)!r})"}
        write_json(out / "hf.json", info)
        return info
    raise ConfigError(
        f"unknown export format {fmt!r}; valid: hf, megatron, parquet "
        "(streaming: mosaicml-streaming does not import beside this torch build; see README)"
    )
