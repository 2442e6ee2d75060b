"""Atomic file output: write to a temporary name beside the target, fsync, then rename."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from assay.errors import AssayError

PARQUET_OPTS: dict[str, Any] = {"compression": "zstd", "compression_level": 3, "write_statistics": True}


@contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temp path in the target's folder; on success rename it over ``target``."""
    target = Path(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        os.close(fd)
    except OSError as e:
        raise AssayError(f"cannot write to {target.parent}: {e.strerror or e}") from e
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_bytes(target: str | Path, data: bytes) -> None:
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)


def dumps_json(obj: Any) -> str:
    """Canonical JSON (sorted keys, fixed separators) so equal content gives equal bytes."""
    return json.dumps(obj, sort_keys=True, indent=1, ensure_ascii=False) + "\n"


def write_json(target: str | Path, obj: Any) -> None:
    write_bytes(target, dumps_json(obj).encode("utf-8"))


def np_array(arr: np.ndarray) -> pa.Array:
    """A zero-copy Arrow view of a 1-d numeric numpy array (``pa.array`` would import pandas)."""
    arr = np.ascontiguousarray(arr)
    return pa.Array.from_buffers(pa.from_numpy_dtype(arr.dtype), len(arr), [None, pa.py_buffer(arr)])


def write_npy(target: str | Path, arr: np.ndarray) -> None:
    with atomic_path(target) as tmp, open(tmp, "wb") as f:  # a file object: np.save(path) appends .npy
        np.save(f, arr, allow_pickle=False)


def read_json(path: str | Path) -> Any:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def write_parquet(
    target: str | Path, table: pa.Table, row_group_rows: int | None = None, **opts: Any
) -> None:
    with atomic_path(target) as tmp:
        pq.write_table(table, tmp, row_group_size=row_group_rows, **{**PARQUET_OPTS, **opts})


def check_writable(directory: Path) -> None:
    """Fail early, with the path named, when ``directory`` cannot be created or written."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".probe."):
            pass
    except OSError as e:
        raise AssayError(f"output directory {directory} is not writable: {e.strerror or e}") from e
