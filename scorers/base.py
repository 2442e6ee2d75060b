"""Scorer contract, registry, parameters and target sets.

A scorer is a small class with one job, ``score_batch(batch) -> pa.Array`` (float64, one value per
row of ``batch``, which has at least ``id`` and ``text``). The base class does batching, timing,
validation (length, type, no NaN) and summary stats. Scorers are pure: same batch, params and target
give the same scores. Register with ``@SCORERS.register("name")``.
"""

from __future__ import annotations

import hashlib
import json
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import xxhash

from assay.errors import ConfigError, InputError
from assay.registry import Registry
from assay.typed import from_dict, to_dict

SCORERS: Registry[type[Scorer]] = Registry("scorer")
BUILTIN_MODULES = ("heuristic", "compression", "dsir", "fasttext_quality", "loss")


@dataclass
class NoParams:
    pass


@dataclass
class TargetSpec:
    """The target set: a file, a domain of the run, or ids; capped at ``sample`` by a seeded sample."""

    file: str | None = None
    domain: str | None = None
    ids: list[str] | None = None
    text_field: str = "text"
    sample: int | None = 1000
    seed: int = 0

    def validate(self) -> None:
        given = [k for k in ("file", "domain", "ids") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ConfigError(f"target: give exactly one of file/domain/ids, got {given or 'none'}")
        if self.sample is not None and self.sample <= 0:
            raise ConfigError("target.sample must be > 0")


@dataclass(frozen=True)
class TargetSet:
    ids: tuple[str, ...]
    texts: tuple[str, ...]

    @property
    def digest(self) -> str:
        h = xxhash.xxh3_128()
        for i in self.ids:
            h.update(i.encode())
        return h.hexdigest()

    def to_table(self) -> pa.Table:
        return pa.table({"id": pa.array(self.ids, pa.string()), "text": pa.array(self.texts, pa.string())})

    @staticmethod
    def from_table(t: pa.Table) -> TargetSet:
        return TargetSet(tuple(t.column("id").to_pylist()), tuple(t.column("text").to_pylist()))


def sample_target(ids: list[str], texts: list[str], spec: TargetSpec, where: str) -> TargetSet:
    """Dedup by id, take the ``sample`` ids with the smallest seeded hash, order by id."""
    pairs = dict(zip(ids, texts))
    if not pairs:
        raise InputError(f"{where}: the target set is empty")
    keys = sorted(pairs)
    if spec.sample is not None and len(keys) > spec.sample:
        rank = sorted(keys, key=lambda i: xxhash.xxh3_64_intdigest(i.encode(), seed=spec.seed))
        keys = sorted(rank[: spec.sample])
    return TargetSet(tuple(keys), tuple(pairs[k] for k in keys))


class Scorer(ABC):
    name: ClassVar[str] = ""
    version: ClassVar[str] = "1"
    Params: ClassVar[type] = NoParams
    needs_target: ClassVar[bool] = False
    #: a ``fit`` pass over every shard first (e.g. DSIR's raw distribution): ``fit_partial`` per
    #: shard, states summed in shard order, then ``set_fitted`` before scoring
    needs_fit: ClassVar[bool] = False
    #: extra output columns besides ``score`` (name, type); score_batch then returns a Table
    extra_schema: ClassVar[tuple[tuple[str, pa.DataType], ...]] = ()

    def __init__(self, params: Any, target: TargetSet | None = None) -> None:
        if self.needs_target and target is None:
            raise ConfigError(
                f"scorer {self.name!r} needs a target set (params: target: {{file|domain|ids}})"
            )
        self.params = params
        self.target = target
        self._ready = False

    def setup(self) -> None:  # noqa: B027 (optional hook)
        """Once per worker before scoring: load models, precompute target state."""

    def fit_partial(self, batch: pa.Table) -> np.ndarray:
        """Additive fit state of one shard (needs_fit scorers)."""
        raise NotImplementedError(f"scorer {self.name} has no fit pass")

    def set_fitted(self, state: np.ndarray) -> None:
        """Receive the summed fit state of all shards (needs_fit scorers)."""
        raise NotImplementedError(f"scorer {self.name} has no fit pass")

    @abstractmethod
    def score_batch(self, batch: pa.Table) -> pa.Array | pa.Table:
        """One float64 per row (or a Table with ``score`` and the ``extra_schema`` columns)."""

    def describe(self) -> dict[str, Any]:
        """Name, version and params for provenance (``_meta.json``, the manifest)."""
        d: dict[str, Any] = {"name": self.name, "version": self.version, "params": to_dict(self.params)}
        if self.target is not None:
            d["target"] = {"docs": len(self.target.ids), "digest": self.target.digest}
        return d

    def score_table(self, table: pa.Table, batch_rows: int = 1024) -> tuple[pa.Table, dict[str, Any]]:
        """Score every row of ``table`` in batches; return ``(id, score, extras...)`` and stats."""
        if not self._ready:
            self.setup()
            self._ready = True
        t0 = time.perf_counter()
        outs: list[pa.Table] = []
        for start in range(0, table.num_rows, batch_rows):
            batch = table.slice(start, batch_rows)
            res = self.score_batch(batch)
            outs.append(self._check(res, batch))
        names = ["score", *[n for n, _ in self.extra_schema]]
        schema = pa.schema([("score", pa.float64()), *self.extra_schema])
        scored = pa.concat_tables(outs) if outs else schema.empty_table()
        out = pa.table({"id": table.column("id"), **{n: scored.column(n) for n in names}})
        secs = time.perf_counter() - t0
        s = out.column("score")
        stats = {
            "docs": out.num_rows,
            "seconds": round(secs, 3),
            "min": pc.min(s).as_py(),
            "max": pc.max(s).as_py(),
            "mean": pc.mean(s).as_py(),
        }
        return out, stats

    def _check(self, res: pa.Array | pa.Table, batch: pa.Table) -> pa.Table:
        if isinstance(res, pa.ChunkedArray):
            res = res.combine_chunks()
        if isinstance(res, pa.Array):
            res = pa.table({"score": res})
        if res.num_rows != batch.num_rows:
            raise InputError(
                f"scorer {self.name} returned {res.num_rows} scores for {batch.num_rows} documents"
            )
        score = res.column("score").cast(pa.float64())
        arr = score.to_numpy()
        if np.isnan(arr).any():
            bad = batch.column("id")[int(np.flatnonzero(np.isnan(arr))[0])].as_py()
            raise InputError(f"scorer {self.name} produced NaN for document {bad}")
        cols = {"score": score}
        for n, tp in self.extra_schema:
            cols[n] = res.column(n).cast(tp)
        return pa.table(cols)


def _load_builtins() -> None:
    import importlib

    for m in BUILTIN_MODULES:
        importlib.import_module(f"assay.scorers.{m}")


def get_scorer_class(name: str, where: str = "") -> type[Scorer]:
    _load_builtins()
    return SCORERS.get(name, where=where)


def scorer_names() -> list[str]:
    _load_builtins()
    return SCORERS.names()


def parse_params(cls: type[Scorer], params: dict[str, Any], source: str) -> Any:
    """Typed params of scorer ``cls``; unknown keys name the key and ``source``."""
    return from_dict(cls.Params, params, source=source)


def params_digest(name: str, params: Any, target: TargetSet | None) -> str:
    blob = json.dumps(
        {"name": name, "params": to_dict(params), "target": target.digest if target else None},
        sort_keys=True,
    )
    return hashlib.blake2b(blob.encode(), digest_size=12).hexdigest()


_WORKER_CACHE: dict[str, Scorer] = {}


def build_scorer(
    name: str, params: dict[str, Any], target: TargetSet | None, source: str = "", state_key: str = ""
) -> Scorer:
    """Instantiate (and cache per process, so ``setup`` runs once per worker) a scorer.
    ``state_key`` distinguishes instances that get different fitted states."""
    cls = get_scorer_class(name)
    p = parse_params(cls, params, source=source or f"scorer {name}")
    key = params_digest(name, p, target) + state_key
    if key not in _WORKER_CACHE:
        _WORKER_CACHE[key] = cls(p, target)
    return _WORKER_CACHE[key]


def target_spec_of(params: Any) -> TargetSpec | None:
    t = getattr(params, "target", None)
    return t if isinstance(t, TargetSpec) else None


__all__ = [
    "SCORERS",
    "NoParams",
    "Scorer",
    "TargetSet",
    "TargetSpec",
    "build_scorer",
    "get_scorer_class",
    "parse_params",
    "sample_target",
    "scorer_names",
]
