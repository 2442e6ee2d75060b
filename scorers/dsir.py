"""DSIR hashed n-gram importance weights (``dsir``), as in Xie et al. 2023 and their
``data-selection`` package (HashedNgramDSIR):

- words = WordPunct tokens of the lower-cased text (``\\w+|[^\\w\\s]+`` with the ``regex`` module, as
  nltk does: its \\w includes join controls such as U+200C, unlike the standard library's ``re``);
- features = counts of the words and of the space-joined n-grams (n = 2..``ngrams``), each hashed
  into ``buckets`` buckets by ``int(sha256(utf8(feature)).hexdigest(), 16) % buckets``;
- raw and target distributions = normalised feature counts over the raw pool (fitted over every
  shard of the run in a ``fit`` pass) and over the target set;
- score(x) = log importance weight = sum_k counts_k(x) * (log(p_target_k + 1e-8) - log(p_raw_k + 1e-8)).

Bucket assignments are exactly the package's (same tokenizer, same hash), so scores agree with it;
the speed comes from hashing each distinct feature once per process (a bounded cache) and
vectorised sums. Resampling (Gumbel top-k) is the selector's ``method: gumbel``. The package also
drops documents under 100 words at resample time; here every document is scored and a length
filter is the user's choice.
"""

from __future__ import annotations

import hashlib
import itertools
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import regex

from assay.errors import ConfigError
from assay.scorers.base import SCORERS, Scorer, TargetSpec

_WORDPUNCT = regex.compile(r"\w+|[^\w\s]+", regex.UNICODE | regex.MULTILINE | regex.DOTALL)
_CACHE_LIMIT = 4_000_000


@dataclass
class DSIRParams:
    target: TargetSpec = field(default_factory=lambda: TargetSpec(sample=None))
    buckets: int = 10000
    ngrams: int = 2

    def validate(self) -> None:
        if self.buckets < 2:
            raise ConfigError("buckets must be >= 2")
        if not 1 <= self.ngrams <= 5:
            raise ConfigError("ngrams must be in 1..5")


_CACHES: dict[int, dict[str, int]] = {}  # per bucket count, shared by every scorer of this process


class NgramHasher:
    """Bucket ids of a text's features; each distinct feature string is hashed once per process
    (the fit and score passes of a worker share the cache)."""

    def __init__(self, buckets: int, ngrams: int) -> None:
        self.buckets, self.ngrams = buckets, ngrams
        self._cache = _CACHES.setdefault(buckets, {})

    def _bucket(self, feat: str) -> int:
        if len(self._cache) >= _CACHE_LIMIT:
            self._cache.clear()
        # int(sha256(.).hexdigest(), 16), from the digest bytes directly (the same number)
        b = int.from_bytes(hashlib.sha256(feat.encode("utf-8")).digest(), "big") % self.buckets
        self._cache[feat] = b
        return b

    def features(self, text: str) -> list[str]:
        words = _WORDPUNCT.findall(text.lower())
        feats = list(words)
        if self.ngrams >= 2:
            feats += [a + " " + b for a, b in itertools.pairwise(words)]
        for n in range(3, self.ngrams + 1):
            feats += [" ".join(words[i : i + n]) for i in range(len(words) - n + 1)]
        return feats

    def buckets_of(self, text: str) -> np.ndarray:
        feats = self.features(text)
        out = list(map(self._cache.get, feats))
        if None in out:  # only a cold cache pays for the Python loop
            out = [self._bucket(f) if b is None else b for f, b in zip(feats, out)]
        return np.fromiter(out, dtype=np.int64, count=len(out))

    def counts(self, texts: list[str]) -> np.ndarray:
        total = np.zeros(self.buckets, dtype=np.int64)
        for t in texts:
            total += np.bincount(self.buckets_of(t), minlength=self.buckets)
        return total


@SCORERS.register("dsir")
class DSIRScorer(Scorer):
    """DSIR log importance weight of hashed unigrams+bigrams, target vs the raw pool."""

    name = "dsir"
    version = "1"
    Params = DSIRParams
    needs_target = True
    needs_fit = True

    def setup(self) -> None:
        self._hasher = NgramHasher(self.params.buckets, self.params.ngrams)
        if self.target is None:
            raise ConfigError("dsir needs a target set")
        tcounts = self._hasher.counts(list(self.target.texts))
        if tcounts.sum() == 0:
            raise ConfigError("dsir: the target set has no words")
        self._target_p = tcounts / tcounts.sum()
        self._log_diff: np.ndarray | None = None

    def fit_partial(self, batch: pa.Table) -> np.ndarray:
        if not self._ready:
            self.setup()
            self._ready = True
        return self._hasher.counts(batch.column("text").to_pylist())

    def set_fitted(self, raw_counts: np.ndarray) -> None:
        if not self._ready:
            self.setup()
            self._ready = True
        if raw_counts.shape != (self.params.buckets,):
            raise ConfigError(
                f"dsir: raw counts have shape {raw_counts.shape}, expected ({self.params.buckets},)"
            )
        if raw_counts.sum() == 0:
            raise ConfigError("dsir: the raw pool has no words")
        raw_p = raw_counts / raw_counts.sum()
        self._log_diff = np.log(self._target_p + 1e-8) - np.log(raw_p + 1e-8)

    def score_batch(self, batch: pa.Table) -> pa.Array:
        if self._log_diff is None:
            raise ConfigError("dsir: the raw distribution was not fitted (set_fitted)")
        ld = self._log_diff
        out = np.empty(batch.num_rows, dtype=np.float64)
        for i, t in enumerate(batch.column("text").to_pylist()):
            b = self._hasher.buckets_of(t)
            out[i] = float(np.dot(ld, np.bincount(b, minlength=len(ld)))) if len(b) else 0.0
        return pa.array(out, pa.float64())
