"""ZIP-FIT compression alignment to a target set (``compression``).

Exact mode is the paper's definition, with gzip:
    C(x)       = len(gzip.compress(utf8(x), compresslevel=level))
    NCD(s, t)  = (C(s+t) - min(C(s), C(t))) / max(C(s), C(t))      (source first, no separator)
    score(s)   = mean_j (1 - NCD(s, t_j))                            over the target documents t_j
Default ``level`` 9: Python's ``gzip.compress`` default, which the ZIP-FIT reference code relies on
(it passes no level). gzip output is a 10-byte header + raw DEFLATE + an 8-byte trailer, so
C(x) = len(raw DEFLATE(x)) + 18, computed without building the gzip framing. C(t_j) is computed once
per target; C(s+t_j) reuses the compressor state after ``s`` (``zlib`` ``copy()``, the same bytes as
one-shot compression of s+t_j, checked in the tests), so each pair costs the compression of t_j only.
zlib releases the GIL: ``threads`` > 1 scores documents of a batch in parallel.

DEFLATE sees 32 KiB back: in s+t_j, t_j can only match the last 32 KiB of s, and a target longer
than 32 KiB only partly matches itself. The formula is applied as defined (no truncation) unless
``max_bytes`` truncates texts; the number of targets over the window is recorded in ``_meta.json``.

Fast mode applies the same formula to a fixed subsample of ``fast_targets`` target documents (the
first by id, which is a content hash, so an unbiased sample) at gzip level ``fast_level`` (default 1:
about 3x cheaper per byte than 9), so its cost per document no longer grows with the target set.
Its rank agreement with exact mode (Spearman, top-10% overlap) on real text is in BENCHMARKS.md.
An empty document has a defined score: C(b"") = 20, so its NCD is finite (never NaN).
"""

from __future__ import annotations

import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pyarrow as pa

from assay.errors import ConfigError
from assay.scorers.base import SCORERS, Scorer, TargetSpec

GZIP_OVERHEAD = 18  # 10-byte gzip header + 8-byte trailer (CRC32, size)
DEFLATE_WINDOW = 32 * 1024


@dataclass
class CompressionParams:
    target: TargetSpec = field(default_factory=TargetSpec)
    mode: Literal["exact", "fast"] = "exact"
    level: int = 9  # gzip level in exact mode
    fast_targets: int = 16
    fast_level: int = 1
    max_bytes: int | None = None  # truncate texts to this many UTF-8 bytes (None: as defined)
    threads: int = 1

    def validate(self) -> None:
        if not 0 <= self.level <= 9:
            raise ConfigError(f"level must be in 0..9 (gzip), got {self.level}")
        if self.threads < 1:
            raise ConfigError("threads must be >= 1")
        if self.max_bytes is not None and self.max_bytes < 1:
            raise ConfigError("max_bytes must be >= 1")
        if not 0 <= self.fast_level <= 9:
            raise ConfigError(f"fast_level must be in 0..9 (gzip), got {self.fast_level}")
        if self.fast_targets < 1:
            raise ConfigError("fast_targets must be >= 1")


def gzip_len(data: bytes, level: int) -> int:
    """len(gzip.compress(data, level)) without the gzip framing work."""
    c = zlib.compressobj(level, zlib.DEFLATED, -15)
    return len(c.compress(data)) + len(c.flush()) + GZIP_OVERHEAD


def alignment_exact(s: bytes, targets: list[bytes], c_targets: np.ndarray, level: int) -> float:
    """mean_j (1 - NCD(s, t_j)); ``c_targets[j]`` = C(t_j)."""
    base = zlib.compressobj(level, zlib.DEFLATED, -15)
    head = len(base.compress(s))
    tail = base.copy()
    c_s = head + len(tail.flush()) + GZIP_OVERHEAD
    c_st = np.empty(len(targets), dtype=np.float64)
    for j, t in enumerate(targets):
        c = base.copy()
        c_st[j] = head + len(c.compress(t)) + len(c.flush()) + GZIP_OVERHEAD
    lo = np.minimum(c_targets, c_s)
    hi = np.maximum(c_targets, c_s)
    return float(np.mean(1.0 - (c_st - lo) / hi))


@SCORERS.register("compression")
class CompressionScorer(Scorer):
    """ZIP-FIT: mean (1 - gzip NCD) to a target set (exact), or to a fixed subsample of it (fast)."""

    name = "compression"
    version = "1"
    Params = CompressionParams
    needs_target = True

    def _encode(self, text: str) -> bytes:
        b = text.encode("utf-8")
        return b[: self.params.max_bytes] if self.params.max_bytes else b

    def setup(self) -> None:
        assert_target = self.target
        if assert_target is None:  # guarded in __init__; keeps type checkers informed
            raise ConfigError("compression needs a target set")
        self._targets = [self._encode(t) for t in assert_target.texts]
        self._pool = ThreadPoolExecutor(self.params.threads) if self.params.threads > 1 else None
        if self.params.mode == "fast":
            self._targets = self._targets[: self.params.fast_targets]
        self._level = self.params.level if self.params.mode == "exact" else self.params.fast_level
        self._c_targets = np.array([gzip_len(t, self._level) for t in self._targets], dtype=np.float64)

    def describe(self) -> dict[str, object]:
        d = super().describe()
        if self.target is not None:
            d["targets_over_window"] = sum(len(t.encode("utf-8")) > DEFLATE_WINDOW for t in self.target.texts)
        return d

    def score_batch(self, batch: pa.Table) -> pa.Array:
        docs = [self._encode(t) for t in batch.column("text").to_pylist()]

        def one(s: bytes) -> float:
            return alignment_exact(s, self._targets, self._c_targets, self._level)

        scores = list(self._pool.map(one, docs)) if self._pool else [one(s) for s in docs]
        return pa.array(scores, pa.float64())
