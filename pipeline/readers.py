"""Corpus readers: JSONL (plain/.gz/.zst), Parquet, a `datasets` folder (save_to_disk), or local data
files through ``datasets.load_dataset``. Each yields ``RawBatch``es of validated text + domain.

Row numbering (``source_row``): 0-based record index within the file; for JSONL it is the 0-based
line index (blank lines are skipped but still counted), so error messages say ``line source_row+1``.
"""

from __future__ import annotations

import glob
import gzip
import io
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from assay.config import InputConfig
from assay.errors import InputError
from assay.pipeline.fsutil import np_array

JSONL_SUFFIXES = (".jsonl", ".json", ".ndjson")
COMPRESSED = {".gz": "gzip", ".zst": "zstd", ".zstd": "zstd"}


@dataclass(frozen=True)
class SourceFile:
    index: int  # position in the sorted list of inputs; defines "first occurrence" for dedup
    path: str
    format: str
    domain: str | None  # set when the domain comes from the path or is constant


@dataclass
class RawBatch:
    text: pa.Array  # string
    domain: pa.Array  # string
    source_row: np.ndarray  # int64


@dataclass
class Rejects:
    """Rows refused under ``on_error: skip`` (and the file-level errors), with the reason."""

    rows: list[dict[str, Any]] = field(default_factory=list)

    def add(self, source: str, row: int | None, reason: str, domain: str | None = None) -> None:
        self.rows.append({"source": source, "row": row, "reason": reason, "domain": domain})


def _detect_format(path: str) -> str:
    p = Path(path)
    if p.is_dir():
        if (p / "state.json").is_file() or (p / "dataset_dict.json").is_file():
            return "hf_disk"
        raise InputError(f"{path} is a directory but not a `datasets` save_to_disk folder; use a glob")
    name = p.name.lower()
    for suf in COMPRESSED:
        if name.endswith(suf):
            name = name[: -len(suf)]
    if name.endswith(JSONL_SUFFIXES):
        return "jsonl"
    if name.endswith(".parquet"):
        return "parquet"
    raise InputError(
        f"{path}: cannot tell the format from the name; expected .jsonl/.json/.ndjson[.gz|.zst], "
        ".parquet, or a save_to_disk folder (or set input.format)"
    )


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    out = ""
    for tok in re.split(r"(\{domain\}|\*\*|\*|\?)", pattern):
        out += {"{domain}": "(?P<domain>[^/]+)", "**": ".*", "*": "[^/]*", "?": "[^/]"}.get(
            tok, re.escape(tok)
        )
    return re.compile(r"(?:^|/)" + out + r"$")


def expand_inputs(cfg: InputConfig) -> list[SourceFile]:
    """Expand globs (sorted, de-duplicated), detect formats and path-derived domains."""
    paths: list[str] = []
    for pattern in cfg.paths:
        if glob.has_magic(pattern):
            found = sorted(glob.glob(pattern, recursive=True))
            if not found:
                raise InputError(f"input pattern {pattern!r} matches no file")
            paths.extend(found)
        else:
            if not os.path.exists(pattern):
                raise InputError(f"input {pattern} does not exist")
            paths.append(pattern)
    seen: set[str] = set()
    unique = []
    for p in paths:
        rp = os.path.abspath(p)
        if rp not in seen:
            seen.add(rp)
            unique.append(rp)
    regex = _pattern_regex(cfg.domain.path_pattern) if cfg.domain.path_pattern else None
    out = []
    for i, p in enumerate(unique):
        fmt = cfg.format if cfg.format != "auto" else _detect_format(p)
        dom = cfg.domain.constant
        if regex is not None:
            m = regex.search(p.replace(os.sep, "/"))
            if m is None:
                raise InputError(f"{p} does not match domain.path_pattern {cfg.domain.path_pattern!r}")
            dom = m.group("domain")
        out.append(SourceFile(i, p, fmt, dom))
    return out


def _open_binary(path: str) -> IO[bytes]:
    lower = path.lower()
    try:
        fh: IO[bytes] = open(path, "rb")  # noqa: SIM115 (returned to the caller, who closes it)
    except OSError as e:
        raise InputError(f"cannot read {path}: {e.strerror or e}") from e
    if lower.endswith(".gz"):
        return gzip.GzipFile(fileobj=fh, mode="rb")  # type: ignore[return-value]
    if lower.endswith((".zst", ".zstd")):
        import zstandard

        reader = zstandard.ZstdDecompressor().stream_reader(fh, read_across_frames=True, closefd=True)
        return io.BufferedReader(reader, buffer_size=1 << 20)  # type: ignore[arg-type]
    return fh


class _Collector:
    """Accumulates validated rows into RawBatches of ``batch_rows``."""

    def __init__(self, batch_rows: int) -> None:
        self.batch_rows = batch_rows
        self.text: list[str] = []
        self.domain: list[str] = []
        self.rows: list[int] = []

    def add(self, text: str, domain: str, row: int) -> None:
        self.text.append(text)
        self.domain.append(domain)
        self.rows.append(row)

    def full(self) -> bool:
        return len(self.text) >= self.batch_rows

    def flush(self) -> RawBatch:
        b = RawBatch(
            pa.array(self.text, pa.string()),
            pa.array(self.domain, pa.string()),
            np.asarray(self.rows, dtype=np.int64),
        )
        self.text, self.domain, self.rows = [], [], []
        return b


class BadRow(Exception):
    pass


def _field(rec: Any, name: str) -> str:
    if not isinstance(rec, dict):
        raise BadRow(f"expected a JSON object, got {type(rec).__name__}")
    if name not in rec:
        raise BadRow(f"missing field {name!r}")
    val = rec[name]
    if not isinstance(val, str):
        raise BadRow(f"field {name!r} is {type(val).__name__}, expected a string")
    return val


def _read_jsonl(src: SourceFile, cfg: InputConfig, batch_rows: int, rejects: Rejects) -> Iterator[RawBatch]:
    col = _Collector(batch_rows)
    dom_field = cfg.domain.field
    n_records = 0
    with _open_binary(src.path) as fh:
        lineno = -1
        while True:
            try:
                raw = fh.readline()
            except (OSError, EOFError, gzip.BadGzipFile) as e:
                raise InputError(f"{src.path}: cannot decompress after line {lineno + 1}: {e}") from e
            except Exception as e:  # zstandard.ZstdError has no importable base here
                raise InputError(f"{src.path}: cannot read after line {lineno + 1}: {e}") from e
            if not raw:
                break
            lineno += 1
            if not raw.strip():
                continue
            n_records += 1
            try:
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as e:
                    raise BadRow(f"invalid UTF-8 at byte {e.start}") from e
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError as e:
                    raise BadRow(f"malformed JSON: {e.msg} at column {e.colno}") from e
                text = _field(rec, cfg.text_field)
                dom = _field(rec, dom_field) if dom_field else src.domain
            except BadRow as e:
                msg = f"{src.path}, line {lineno + 1}: {e}"
                if cfg.on_error == "fail":
                    raise InputError(msg) from e
                rejects.add(src.path, lineno, str(e))
                continue
            col.add(text, dom or "default", lineno)
            if col.full():
                yield col.flush()
    if n_records == 0:
        _empty(src, cfg, rejects)
    if col.text:
        yield col.flush()


def _empty(src: SourceFile, cfg: InputConfig, rejects: Rejects) -> None:
    msg = f"{src.path}: file is empty (no records)"
    if cfg.on_error == "fail":
        raise InputError(msg)
    rejects.add(src.path, None, "file is empty (no records)")


def _check_arrow_column(
    table: pa.Table, name: str, src: SourceFile, offset: int, cfg: InputConfig, rejects: Rejects
) -> tuple[pa.Array, np.ndarray | None]:
    """Validate a string column; return it and, when rows were rejected, the keep-mask."""
    if name not in table.column_names:
        raise InputError(f"{src.path}: no column {name!r}; columns are {table.column_names}")
    arr = table.column(name).combine_chunks()
    if pa.types.is_large_string(arr.type) or pa.types.is_string_view(arr.type):
        arr = arr.cast(pa.string())
    if not pa.types.is_string(arr.type):
        raise InputError(f"{src.path}: column {name!r} has type {arr.type}, expected a string column")
    bad: dict[int, str] = {}
    if arr.null_count:
        for k in np.flatnonzero(arr.is_null().to_numpy(zero_copy_only=False)).tolist():
            bad[k] = f"field {name!r} is null, expected a string"
    try:
        arr.validate(full=True)
    except pa.ArrowInvalid:
        # Find every invalid row so ``skip`` rejects exactly those.
        for k, v in enumerate(pc.cast(arr, pa.binary()).to_pylist()):
            if v is not None:
                try:
                    v.decode("utf-8")
                except UnicodeDecodeError:
                    bad[k] = f"field {name!r} is not valid UTF-8"
    if not bad:
        return arr, None
    if cfg.on_error == "fail":
        first = min(bad)
        raise InputError(f"{src.path}, row {offset + first}: {bad[first]}")
    keep = np.ones(len(arr), dtype=bool)
    for k, reason in sorted(bad.items()):
        rejects.add(src.path, offset + k, reason)
        keep[k] = False
    return arr, keep


def _arrow_batches(
    tables: Iterator[pa.Table], src: SourceFile, cfg: InputConfig, rejects: Rejects
) -> Iterator[RawBatch]:
    offset = 0
    total = 0
    for t in tables:
        n = t.num_rows
        total += n
        text, keep = _check_arrow_column(t, cfg.text_field, src, offset, cfg, rejects)
        if cfg.domain.field:
            dom, keep2 = _check_arrow_column(t, cfg.domain.field, src, offset, cfg, rejects)
            if keep2 is not None:
                keep = keep2 if keep is None else keep & keep2
        else:
            dom = pa.repeat(pa.scalar(src.domain or "default", pa.string()), n)
        rows = np.arange(offset, offset + n, dtype=np.int64)
        if keep is not None:
            idx = np_array(np.flatnonzero(keep))
            text, dom, rows = text.take(idx), dom.take(idx), rows[keep]
        offset += n
        if len(text):
            yield RawBatch(text, dom, rows)
    if total == 0:
        _empty(src, cfg, rejects)


def _read_parquet(src: SourceFile, cfg: InputConfig, batch_rows: int, rejects: Rejects) -> Iterator[RawBatch]:
    try:
        pf = pq.ParquetFile(src.path)
    except (OSError, pa.ArrowException) as e:
        raise InputError(f"cannot read {src.path} as Parquet: {e}") from e
    names = pf.schema_arrow.names
    cols = [c for c in (cfg.text_field, cfg.domain.field) if c]
    for c in cols:
        if c not in names:
            raise InputError(f"{src.path}: no column {c!r}; columns are {names}")

    def tables() -> Iterator[pa.Table]:
        try:
            for b in pf.iter_batches(batch_size=batch_rows, columns=cols):
                yield pa.Table.from_batches([b])
        except (OSError, pa.ArrowException) as e:
            raise InputError(f"{src.path}: corrupt Parquet data: {e}") from e

    yield from _arrow_batches(tables(), src, cfg, rejects)


def _hf_offline() -> None:
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _read_hf_disk(src: SourceFile, cfg: InputConfig, batch_rows: int, rejects: Rejects) -> Iterator[RawBatch]:
    _hf_offline()
    import datasets

    try:
        ds = datasets.load_from_disk(src.path)
    except Exception as e:
        raise InputError(f"cannot load `datasets` folder {src.path}: {e}") from e
    if isinstance(ds, datasets.DatasetDict):
        raise InputError(
            f"{src.path} is a DatasetDict with splits {sorted(ds)}; point input.paths at one split's folder"
        )
    yield from _arrow_batches(ds.with_format("arrow").iter(batch_size=batch_rows), src, cfg, rejects)


def _read_hf_load(src: SourceFile, cfg: InputConfig, batch_rows: int, rejects: Rejects) -> Iterator[RawBatch]:
    _hf_offline()
    import datasets

    try:
        ds = datasets.load_dataset(cfg.builder, data_files=[src.path], split="train", streaming=True)
        it = ds.with_format("arrow").iter(batch_size=batch_rows)
        tables = (t if isinstance(t, pa.Table) else pa.table(t) for t in it)
        yield from _arrow_batches(tables, src, cfg, rejects)
    except (InputError, GeneratorExit):
        raise
    except Exception as e:
        raise InputError(f"datasets.load_dataset({cfg.builder!r}) failed on {src.path}: {e}") from e


READERS = {"jsonl": _read_jsonl, "parquet": _read_parquet, "hf_disk": _read_hf_disk, "hf_load": _read_hf_load}


def read_batches(src: SourceFile, cfg: InputConfig, batch_rows: int, rejects: Rejects) -> Iterator[RawBatch]:
    """Stream validated batches of one input file. Bad rows raise InputError or go to ``rejects``."""
    try:
        if not os.access(src.path, os.R_OK):
            raise InputError(f"cannot read {src.path}: permission denied")
        yield from READERS[src.format](src, cfg, batch_rows, rejects)
    except InputError as e:
        # Row-level problems only raise under ``fail``; what reaches here under ``skip`` is file-level
        # (unreadable, corrupt, wrong schema): the rest of the file is rejected with the reason.
        if cfg.on_error == "fail":
            raise
        rejects.add(src.path, None, str(e))
