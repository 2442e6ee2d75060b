"""``assay eval``: does the selected data teach better? Train a fresh proxy model on each manifest's
stream and on built-in baselines (same model, seed and token budget) and report the loss on a
held-out target set, as a table and as a plot of target loss against tokens seen.

Streams (documents in training order), all from a run's manifest and shards:
- ``manifest``: phase by phase, each domain's selected documents in a seeded random order (cycling
  when a domain is repeated), taken until the phase's token allocation of that domain is met; the
  domains are interleaved by a seeded draw proportional to their remaining tokens in the phase.
- ``random`` baseline: the same token allocation per phase and domain, but documents drawn at random
  from each domain's whole pool (selection dropped, mixture kept).
- ``natural`` baseline: the same tokens per phase drawn at random from the whole pool (selection and
  mixture dropped: domains in their natural proportions).
Target documents are removed from every stream (the number is reported). The training budget
defaults to the shortest stream's length in model tokens, so no stream repeats.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import xxhash

from assay.errors import ConfigError, InputError
from assay.pipeline.fsutil import atomic_path, read_json, write_bytes, write_json
from assay.pipeline.models import BuiltinGPT, GPTConfig, ProxyModel
from assay.pipeline.train import TrainConfig, pack, train


@dataclass
class EvalConfig:
    model: GPTConfig = field(default_factory=GPTConfig)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(tokens=0))
    baselines: list[str] = field(default_factory=lambda: ["random", "natural"])
    eval_points: int = 8
    max_target_docs: int = 200
    max_target_chars: int = 4000  # per target document (its start), to bound evaluation time
    seed: int = 0


class RunDocs:
    """Documents of a run (id, domain, n_tokens, text) through DuckDB over its shards."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        shards = sorted(str(p) for p in (run_dir / "shards").glob("*.parquet"))
        if not shards:
            raise InputError(f"{run_dir} has no shards; is it a run directory?")
        self.con = duckdb.connect()
        self.con.sql(f"CREATE VIEW docs AS SELECT id, domain, n_tokens, text FROM read_parquet({shards!r})")

    def meta(self, where: str = "true") -> pa.Table:
        return self.con.sql(
            f"SELECT id, domain, n_tokens FROM docs WHERE {where} ORDER BY id"
        ).to_arrow_table()

    def selected(
        self, domains: list[str], exclude: set[str] | frozenset[str] = frozenset()
    ) -> dict[str, list[str]]:
        """Each of ``domains``' selected ids (``selection/*.parquet``), sorted by id, minus ``exclude``."""
        files = sorted(str(p) for p in (self.run_dir / "selection").glob("*.parquet"))
        out: dict[str, list[str]] = {d: [] for d in domains}
        if files:
            t = self.con.sql(
                f"SELECT id, domain FROM read_parquet({files!r}) WHERE selected ORDER BY domain, id"
            ).to_arrow_table()
            for i, d in zip(t.column("id").to_pylist(), t.column("domain").to_pylist()):
                if d in out and i not in exclude:
                    out[d].append(i)
        return out

    def texts(self, ids: list[str]) -> dict[str, str]:
        self.con.register("want", pa.table({"id": sorted(set(ids))}))
        t = self.con.sql("SELECT id, text FROM docs JOIN want USING (id)").to_arrow_table()
        self.con.unregister("want")
        return dict(zip(t.column("id").to_pylist(), t.column("text").to_pylist()))


def seeded_order(ids: list[str], seed: int) -> list[str]:
    """``ids`` sorted by XXH3-64(id, seed): a seeded shuffle independent of the input order."""
    return sorted(ids, key=lambda i: xxhash.xxh3_64_intdigest(i.encode(), seed=seed))


def _take(pool: list[str], tokens: dict[str, int], need: int, cursor: int) -> tuple[list[str], int]:
    """Documents from ``pool`` (cycling from ``cursor``) until ``need`` tokens are met."""
    out: list[str] = []
    got = 0
    if not pool:
        return out, cursor
    while got < need:
        d = pool[cursor % len(pool)]
        cursor += 1
        out.append(d)
        got += tokens[d]
    return out, cursor


def _interleave(parts: dict[str, list[str]], tokens: dict[str, int], rng: np.random.Generator) -> list[str]:
    """Merge per-domain lists, drawing the next domain ∝ its remaining tokens."""
    names = sorted(parts)
    pos = dict.fromkeys(names, 0)
    left = {d: sum(tokens[i] for i in parts[d]) for d in names}
    out = []
    while any(pos[d] < len(parts[d]) for d in names):
        w = np.array([left[d] if pos[d] < len(parts[d]) else 0 for d in names], dtype=np.float64)
        if w.sum() <= 0:
            w = np.array([1.0 if pos[d] < len(parts[d]) else 0.0 for d in names])
        d = names[int(rng.choice(len(names), p=w / w.sum()))]
        i = parts[d][pos[d]]
        pos[d] += 1
        left[d] -= tokens[i]
        out.append(i)
    return out


def phase_streams(
    manifest_path: Path, kinds: list[str], exclude: set[str], seed: int
) -> dict[str, list[list[str]]]:
    """Document ids in training order, one list per phase, for the manifest (``manifest``) and the
    baselines ``random`` / ``natural`` (see the module docstring)."""
    m = read_json(manifest_path)
    run_dir = manifest_path.parent
    docs = RunDocs(run_dir)
    meta = docs.meta()
    tokens = dict(zip(meta.column("id").to_pylist(), meta.column("n_tokens").to_pylist()))
    by_domain: dict[str, list[str]] = {}
    for i, d in zip(meta.column("id").to_pylist(), meta.column("domain").to_pylist()):
        if i not in exclude:
            by_domain.setdefault(d, []).append(i)
    selected = docs.selected(list(m["domains"]), exclude)
    out: dict[str, list[list[str]]] = {}
    for kind in ["manifest", *kinds]:
        if kind not in ("manifest", "random", "natural"):
            raise ConfigError(f"unknown baseline {kind!r}; valid: random, natural")
        rng = np.random.default_rng(seed)
        phases: list[list[str]] = []
        if kind == "natural":
            pool = seeded_order([i for ids in by_domain.values() for i in ids], seed)
            cursor = 0
            for ph in m["schedule"]["phases"]:
                part, cursor = _take(pool, tokens, ph["tokens"], cursor)
                phases.append(part)
        else:
            src = selected if kind == "manifest" else by_domain
            pools = {d: seeded_order(ids, seed + k) for k, (d, ids) in enumerate(sorted(src.items()))}
            cursors = dict.fromkeys(pools, 0)
            for ph in m["schedule"]["phases"]:
                parts = {}
                for d, need in ph["domain_tokens"].items():
                    if need:
                        parts[d], cursors[d] = _take(pools.get(d, []), tokens, need, cursors[d])
                phases.append(_interleave(parts, tokens, rng))
        out[kind] = phases
    return out


def build_streams(
    manifest_path: Path, kinds: list[str], exclude: set[str], seed: int
) -> dict[str, list[str]]:
    """``phase_streams`` with the phases concatenated."""
    return {
        k: [i for ph in v for i in ph] for k, v in phase_streams(manifest_path, kinds, exclude, seed).items()
    }


def target_docs(spec: str, run_dir: Path, cfg: EvalConfig) -> tuple[list[str], set[str]]:
    """Held-out target texts and the ids to keep out of training: ``domain:NAME`` (the documents a
    scorer of the run used as its target, within that domain) or ``file:PATH`` (any input format)."""
    import pyarrow.parquet as pq

    if spec.startswith("file:"):
        from assay.config import InputConfig
        from assay.pipeline.readers import Rejects, expand_inputs, read_batches
        from assay.pipeline.shard import doc_ids

        icfg = InputConfig(paths=[spec[5:]])
        texts, ids = [], []
        for src in expand_inputs(icfg):
            for b in read_batches(src, icfg, 1024, Rejects()):
                texts.extend(b.text.to_pylist())
                ids.extend(doc_ids(b.text)[0].to_pylist())
        if not texts:
            raise InputError(f"the target file {spec[5:]} has no documents")
        return texts[: cfg.max_target_docs], set(ids)
    if not spec.startswith("domain:"):
        raise ConfigError(f"--target {spec!r}: expected domain:NAME or file:PATH")
    dom = spec[7:]
    held: set[str] = set()
    for p in (run_dir / "scores").glob("*/_target.parquet"):
        held.update(pq.read_table(p, columns=["id"]).column("id").to_pylist())
    docs = RunDocs(run_dir)
    meta = docs.meta(f"domain = '{dom.replace(chr(39), chr(39) * 2)}'")
    ids = [i for i in meta.column("id").to_pylist() if i in held]
    if not ids:
        raise InputError(
            f"the run {run_dir} holds out no documents of domain {dom!r} (no scorer used it as its target); "
            "give a scorer `target: {domain: ...}` or use --target file:PATH"
        )
    ids = sorted(ids)[: cfg.max_target_docs]
    by_id = docs.texts(ids)
    return [by_id[i] for i in ids], held


def target_loss(model: ProxyModel, texts: list[str], max_chars: int) -> float:
    """Mean next-token NLL (nats) over the target documents' tokens."""
    tot, n = 0.0, 0
    for t in texts:
        s, k = model.doc_loss(t[:max_chars])
        tot += s
        n += k
    return tot / max(n, 1)


def evaluate(
    manifests: list[Path], target: str, cfg: EvalConfig, out_dir: Path, names: list[str] | None = None
) -> dict[str, Any]:
    """Train one proxy per stream, evaluate on the target set; write eval.json, eval.md, eval.png."""
    import torch

    if not manifests:
        raise ConfigError("give at least one --manifest")
    for mp in manifests:
        if not mp.is_file():
            raise InputError(f"manifest {mp} does not exist")
    texts, exclude = target_docs(target, manifests[0].parent, cfg)
    streams: dict[str, list[str]] = {}
    for k, mp in enumerate(manifests):
        name = names[k] if names else mp.parent.name
        built = build_streams(mp, cfg.baselines if k == 0 else [], exclude, cfg.seed)
        streams[name] = built.pop("manifest")
        for b, ids in built.items():
            streams[b] = ids
    run_docs = {mp: RunDocs(mp.parent) for mp in manifests}
    lookup: dict[str, str] = {}
    for rd in run_docs.values():
        lookup.update(rd.texts([i for s in streams.values() for i in s if i not in lookup]))
    probe = BuiltinGPT(GPTConfig(**asdict(cfg.model)), seed=cfg.seed)
    lengths = {n: len(pack(probe, [lookup[i] for i in ids])) - 1 for n, ids in streams.items()}
    budget = cfg.train.tokens or min(lengths.values())
    results: dict[str, Any] = {
        "target": target,
        "target_docs": len(texts),
        "budget_tokens": budget,
        "held_out_ids": len(exclude),
        "model": asdict(cfg.model),
        "streams": {},
    }
    torch.manual_seed(cfg.seed)
    for name, ids in streams.items():
        model = BuiltinGPT(GPTConfig(**asdict(cfg.model)), seed=cfg.seed)
        tc = TrainConfig(**{**asdict(cfg.train), "tokens": budget, "seed": cfg.seed})
        per_step = tc.batch_size * model.context
        steps = budget // per_step
        every = max(1, steps // max(1, cfg.eval_points))
        curve: list[tuple[int, float]] = [(0, target_loss(model, texts, cfg.max_target_chars))]

        def on_eval(step: int, seen: int, m: ProxyModel = model, c: list[tuple[int, float]] = curve) -> None:
            c.append((seen, target_loss(m, texts, cfg.max_target_chars)))

        info = train(
            model,
            [lookup[i] for i in ids],
            tc,
            eval_every=every,
            on_eval=on_eval,
        )
        curve.append((info["tokens"], target_loss(model, texts, cfg.max_target_chars)))
        results["streams"][name] = {
            "docs": len(ids),
            "stream_tokens": lengths[name],
            "epochs": info["epochs"],
            "train_loss": info["train_loss_last"],
            "target_loss": curve[-1][1],
            "curve": curve,
        }
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(out_dir / "eval.json", results)
    write_bytes(out_dir / "eval.md", _table(results).encode())
    _plot(results, out_dir / "eval.png")
    return results


def _table(r: dict[str, Any]) -> str:
    lines = [
        f"Target {r['target']} ({r['target_docs']} docs), {r['budget_tokens']:,} training tokens per stream",
        "",
        "| stream | docs | target loss (nats/token) | bits/token | train loss | epochs |",
        "|---|---|---|---|---|---|",
    ]
    for name, s in sorted(r["streams"].items(), key=lambda kv: kv[1]["target_loss"]):
        lines.append(
            f"| {name} | {s['docs']} | {s['target_loss']:.4f} | {s['target_loss'] / math.log(2):.4f} "
            f"| {s['train_loss']:.4f} | {s['epochs']:.2f} |"
        )
    return "\n".join(lines) + "\n"


def _plot(r: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=120)
    for name, s in sorted(r["streams"].items()):
        xs, ys = zip(*s["curve"])
        ax.plot(xs, ys, marker="o", markersize=3, label=f"{name} ({s['target_loss']:.3f})")
    ax.set_xlabel("training tokens")
    ax.set_ylabel("target loss (nats/token)")
    ax.set_title(f"target {r['target']}")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", metadata={"Software": None})
    plt.close(fig)


def load_eval_config(path: str | None) -> EvalConfig:
    if path is None:
        return EvalConfig()
    import yaml

    from assay.typed import from_dict

    try:
        data = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(f"cannot read eval config {path}: {e}") from e
    return from_dict(EvalConfig, data, source=path)


def train_on_manifest(
    manifest: Path, out: Path, config_path: str | None, tokens: int | None
) -> dict[str, Any]:
    """``assay train``: the built-in proxy on the manifest's stream; checkpoints in ``out`` (resumable),
    the final model in ``out/model``."""
    from dataclasses import replace

    cfg = load_eval_config(config_path)
    if not manifest.is_file():
        raise InputError(f"manifest {manifest} does not exist")
    ids = build_streams(manifest, [], set(), cfg.seed)["manifest"]
    texts = RunDocs(manifest.parent).texts(ids)
    model = BuiltinGPT(GPTConfig(**asdict(cfg.model)), seed=cfg.seed)
    stream = [texts[i] for i in ids]
    budget = tokens or cfg.train.tokens or (len(pack(model, stream)) - 1)
    info = train(model, stream, replace(cfg.train, tokens=budget, seed=cfg.seed), out=out / "checkpoints")
    model.save(out / "model")
    return info
