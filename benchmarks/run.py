"""assay benchmarks: each measures assay and its reference side by side in the same run and prints
the ratio. Results go to stdout and to benchmarks/results/<name>.json. Record them in BENCHMARKS.md.

    python benchmarks/run.py [--dev ../shared/corpora/dev] [--only shard,rss,compression,dsir,fasttext]

Real text comes from the product owner's dev corpus (default ../shared/corpora/dev beside the repo);
the benchmarks say so and stop when it is missing. Optional references: `pip install data-selection
nltk` for the DSIR comparison (skipped with a message when absent).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DEV = REPO.parent / "shared" / "corpora" / "dev"
RESULTS = REPO / "benchmarks" / "results"


def load_dev(dev: Path, domains: list[str] | None = None) -> dict[str, list[str]]:
    out = {}
    for p in sorted(dev.glob("*.parquet")):
        if domains is None or p.stem in domains:
            out[p.stem] = pq.read_table(p, columns=["text"]).column("text").to_pylist()
    return out


def timed(fn: Callable[[], Any], repeat: int = 1) -> tuple[float, Any]:
    best, res = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        res = fn()
        best = min(best, time.perf_counter() - t0)
    return best, res


def report(name: str, rows: dict[str, Any]) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(rows, indent=1, sort_keys=True) + "\n")
    print(f"\n== {name}")
    for k, v in rows.items():
        print(f"  {k:42s} {v:.4g}" if isinstance(v, float) else f"  {k:42s} {v}")


# --------------------------------------------------------------------------- shard throughput
def bench_shard(dev: Path) -> None:
    """`assay shard` vs a plain pyarrow read + zstd Parquet write of the same files, same process."""
    from assay.config import DomainConfig, InputConfig, ShardConfig
    from assay.pipeline.executor import LocalExecutor, RayExecutor
    from assay.pipeline.shard import run_shard

    files = sorted(dev.glob("*.parquet"))
    text_mb = sum(pq.read_table(f, columns=["text"]).column("text").nbytes for f in files) / 1e6

    def plain(out: Path) -> None:
        for f in files:
            t = pq.read_table(f)
            pq.write_table(t, out / f.name, compression="zstd", compression_level=3)

    def ours(out: Path, ex: Any) -> None:
        cfg = InputConfig(paths=[str(f) for f in files], domain=DomainConfig(field="domain"))
        run_shard(cfg, ShardConfig(target_mb=64), out, ex)

    with tempfile.TemporaryDirectory() as d:
        t_plain, _ = timed(lambda: plain(Path(tempfile.mkdtemp(dir=d))), repeat=2)
        t_local, _ = timed(lambda: ours(Path(tempfile.mkdtemp(dir=d)), LocalExecutor()), repeat=2)
        ray = RayExecutor(workers=2)
        try:
            ours(Path(tempfile.mkdtemp(dir=d)), ray)  # warm the workers
            t_ray, _ = timed(lambda: ours(Path(tempfile.mkdtemp(dir=d)), ray), repeat=2)
        finally:
            ray.close()
    report(
        "shard",
        {
            "corpus text MB": round(text_mb, 1),
            "pyarrow read+write MB/s (1 process)": text_mb / t_plain,
            "assay shard local MB/s (1 process)": text_mb / t_local,
            "assay shard ray MB/s (2 workers)": text_mb / t_ray,
            "ratio local / pyarrow (goal >= 0.7)": t_plain / t_local,
            "ratio ray / pyarrow (goal >= 0.7)": t_plain / t_ray,
        },
    )


# --------------------------------------------------------------------------- peak RSS vs corpus size
RSS_CHILD = r"""
import resource, sys
from pathlib import Path
from assay.config import InputConfig, ShardConfig
from assay.pipeline.executor import LocalExecutor
from assay.pipeline.shard import run_shard
run_shard(InputConfig(paths=[sys.argv[1] + "/*.jsonl.zst"]), ShardConfig(target_mb=256, spill_mb=128),
          Path(sys.argv[2]), LocalExecutor())
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def _make_big(dev: Path, out: Path, mb: int) -> None:
    """JSONL.zst files of ~``mb`` MB of text: the dev corpus repeated, each copy made unique."""
    import zstandard

    texts = [t for ts in load_dev(dev).values() for t in ts]
    out.mkdir(parents=True, exist_ok=True)
    written, copy, part = 0, 0, 0
    while written < mb * 1e6:
        with open(out / f"part-{part:04d}.jsonl.zst", "wb") as fh:
            w = zstandard.ZstdCompressor(level=1).stream_writer(fh)
            chunk = 0
            while chunk < 256e6 and written < mb * 1e6:
                for t in texts:
                    line = json.dumps({"text": f"[copy {copy}] {t}"}) + "\n"
                    w.write(line.encode())
                    chunk += len(t)
                    written += len(t)
                copy += 1
            w.close()
        part += 1


def bench_rss(dev: Path, sizes: tuple[int, ...] = (250, 1000, 3000)) -> None:
    """Peak RSS of `assay shard` (one process) as the corpus grows: it must stay flat."""
    rows: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(dir=os.environ.get("ASSAY_BENCH_TMP")) as d:
        for mb in sizes:
            src = Path(d) / f"in{mb}"
            _make_big(dev, src, mb)
            t0 = time.perf_counter()
            out = subprocess.run(
                [sys.executable, "-c", RSS_CHILD, str(src), str(Path(d) / f"run{mb}")],
                check=True,
                capture_output=True,
                text=True,
            )
            secs = time.perf_counter() - t0
            rows[f"{mb} MB text: peak RSS MB"] = int(out.stdout.split()[-1]) / 1024
            rows[f"{mb} MB text: MB/s"] = mb / secs
            subprocess.run(["rm", "-rf", str(src), str(Path(d) / f"run{mb}")], check=True)
    report("rss", rows)


# --------------------------------------------------------------------------- ZIP-FIT
def _pool(dev: Path, per_domain: int, seed: int = 0) -> tuple[list[str], list[str]]:
    rng = np.random.default_rng(seed)
    data = load_dev(dev)
    pool: list[str] = []
    for d, ts in sorted(data.items()):
        idx = rng.permutation(len(ts))[:per_domain]
        pool.extend(ts[i] for i in idx if d != "code-python" or i % 2)
    cp = data["code-python"]
    target = [cp[i] for i in rng.permutation(len(cp)) if i % 2 == 0]
    return pool, target


def bench_compression(dev: Path, per_domain: int = 20, n_targets: int = 50) -> None:
    """Exact and fast mode vs a straightforward per-pair gzip.compress ZIP-FIT, same 2 cores."""
    from scipy.stats import spearmanr

    from assay.scorers.base import TargetSet, TargetSpec
    from assay.scorers.compression import CompressionParams, CompressionScorer

    pool, target = _pool(dev, per_domain)
    target = target[:n_targets]

    def straightforward() -> list[float]:
        def c(x: str) -> int:
            return len(gzip.compress(x.encode("utf-8"), compresslevel=9))

        return [
            float(np.mean([1 - (c(s + t) - min(c(s), c(t))) / max(c(s), c(t)) for t in target])) for s in pool
        ]

    ts = TargetSet(tuple(f"t{i:04d}" for i in range(len(target))), tuple(target))
    table = pa.table({"id": [str(i) for i in range(len(pool))], "text": pool})

    def ours(mode: str) -> np.ndarray:
        s = CompressionScorer(CompressionParams(target=TargetSpec(ids=["x"]), mode=mode, threads=2), ts)
        return s.score_table(table, batch_rows=64)[0].column("score").to_numpy()

    t_ref, ref = timed(straightforward)
    t_exact, exact = timed(lambda: ours("exact"))
    t_fast, fast = timed(lambda: ours("fast"), repeat=3)
    k = max(1, len(pool) // 10)
    top = lambda v: set(np.argsort(-np.asarray(v))[:k].tolist())  # noqa: E731
    report(
        "compression",
        {
            "pool docs / targets": f"{len(pool)} / {len(target)} (target: code-python, 10 domains)",
            "exact == straightforward (max abs diff)": float(np.abs(exact - np.asarray(ref)).max()),
            "straightforward docs/s": len(pool) / t_ref,
            "exact docs/s (2 threads)": len(pool) / t_exact,
            "fast docs/s (2 threads)": len(pool) / t_fast,
            "exact speedup (goal >= 1.5)": t_ref / t_exact,
            "fast speedup (goal >= 50)": t_ref / t_fast,
            "fast vs exact Spearman (goal >= 0.9)": float(spearmanr(fast, exact).statistic),
            "fast vs exact top-10% overlap": len(top(fast) & top(exact)) / k,
        },
    )


# --------------------------------------------------------------------------- DSIR
def _dsir_scorer(target: list[str]) -> Any:
    from assay.scorers.base import TargetSet, TargetSpec
    from assay.scorers.dsir import DSIRParams, DSIRScorer

    ts = TargetSet(tuple(f"t{i:05d}" for i in range(len(target))), tuple(target))
    return DSIRScorer(DSIRParams(target=TargetSpec(ids=["x"])), ts)


def _dsir_fit(texts: list[str], target: list[str]) -> np.ndarray:
    return _dsir_scorer(target).fit_partial(pa.table({"text": texts}))


def _dsir_score(texts: list[str], target: list[str], raw: np.ndarray) -> np.ndarray:
    s = _dsir_scorer(target)
    s.set_fitted(raw)
    table = pa.table({"id": [str(i) for i in range(len(texts))], "text": texts})
    return s.score_table(table)[0]["score"].to_numpy()


def bench_dsir(dev: Path, per_domain: int = 300) -> None:
    """dsir scorer vs the `data-selection` package (HashedNgramDSIR), same data, settings and processes:
    the package with num_proc=P against assay's fit + score split over P processes (as the pipeline
    runs them, one shard per worker), each with a cold feature-hash cache."""
    try:
        import data_selection
    except ImportError:
        print("\n== dsir: skipped (pip install data-selection nltk to compare with the package)")
        return
    from concurrent.futures import ProcessPoolExecutor

    from scipy.stats import spearmanr

    pool, target = _pool(dev, per_domain)
    rows: dict[str, Any] = {"pool docs / target docs": f"{len(pool)} / {len(target)}"}
    with tempfile.TemporaryDirectory() as d:
        for name, texts in (("pool", pool), ("target", target)):
            with open(Path(d) / f"{name}.jsonl", "w") as f:
                f.writelines(json.dumps({"text": t}) + "\n" for t in texts)

        def package(procs: int) -> np.ndarray:
            cache = tempfile.mkdtemp(dir=d)
            ds = data_selection.HashedNgramDSIR(
                [f"{d}/pool.jsonl"], [f"{d}/target.jsonl"], cache_dir=cache, num_proc=procs, num_buckets=10000
            )
            ds.fit_importance_estimator(num_tokens_to_fit="all")
            ds.compute_importance_weights()
            parts = sorted((Path(cache) / "log_importance_weights").glob("*.npy"), key=lambda p: int(p.stem))
            out = np.empty(len(pool))
            for k, p in enumerate(parts):  # virtual shard k holds rows k, k + procs, ...
                out[k :: len(parts)] = np.load(p)
            return out

        def ours(procs: int) -> np.ndarray:
            chunks = [pool[k::procs] for k in range(procs)]
            with ProcessPoolExecutor(procs) as ex:
                raw = sum(ex.map(_dsir_fit, chunks, [target] * procs))
                parts = list(ex.map(_dsir_score, chunks, [target] * procs, [raw] * procs))
            out = np.empty(len(pool))
            for k, p in enumerate(parts):
                out[k::procs] = p
            return out

        # 2 processes first: nltk 3.10's tokenizer, once used in this process, no longer pickles to
        # joblib workers (its ReDoS-guard sentinel loses its identity: "timeout not float or None")
        for procs in (2, 1):
            t_pkg, ref = timed(lambda p=procs: package(p))
            t_ours, mine = timed(lambda p=procs: ours(p))
            rows[f"{procs} process(es): data-selection docs/s"] = len(pool) / t_pkg
            rows[f"{procs} process(es): assay dsir docs/s"] = len(pool) / t_ours
            rows[f"{procs} process(es): speedup (goal >= 3)"] = t_pkg / t_ours
            rows[f"{procs} process(es): Spearman vs package (goal >= 0.99)"] = float(
                spearmanr(mine, ref).statistic
            )
            rows[f"{procs} process(es): max abs diff"] = float(np.abs(mine - ref).max())
    report("dsir", rows)


# --------------------------------------------------------------------------- fastText
def bench_fasttext(dev: Path) -> None:
    """fasttext scorer vs fastText's own batch predict on the same (newline-normalised) texts."""
    import fasttext

    from assay.scorers.fasttext_quality import FastTextParams, FastTextScorer, normalize, train_classifier
    from assay.scorers.fasttext_quality import write_training_file as wtf

    data = load_dev(dev)
    hq = data["fiction"] + data["prose"] + data["news"]
    lq = data["manpages-en"] + data["dictionary"][:2000]
    texts = [t for ts in data.values() for t in ts]
    with tempfile.TemporaryDirectory() as d:
        wtf(Path(d) / "train.txt", [("hq", t) for t in hq] + [("lq", t) for t in lq])
        train_classifier(Path(d) / "train.txt", Path(d) / "q.bin", epoch=3, thread=2)
        model = fasttext.load_model(str(Path(d) / "q.bin"))
        scorer = FastTextScorer(FastTextParams(model=str(Path(d) / "q.bin"), label="hq"))
        table = pa.table({"id": [str(i) for i in range(len(texts))], "text": texts})
        scorer.score_table(table.slice(0, 10))

        def raw() -> Any:
            return model.predict([normalize(t) for t in texts], k=2, threshold=0.0)

        t_raw, _ = timed(raw, repeat=3)
        t_ours, _ = timed(lambda: scorer.score_table(table, batch_rows=1024), repeat=3)
    report(
        "fasttext",
        {
            "docs": len(texts),
            "fastText batch predict docs/s": len(texts) / t_raw,
            "assay fasttext docs/s": len(texts) / t_ours,
            "ratio (goal >= 0.8)": t_raw / t_ours,
        },
    )


# --------------------------------------------------------------------------- proxy training
def bench_train(dev: Path, steps: int = 40) -> None:
    """assay's training loop vs a plain torch loop (same model, batches and optimizer), tokens/s."""
    import torch

    from assay.pipeline.models import BuiltinGPT, GPTConfig
    from assay.pipeline.train import Batches, TrainConfig, make_optimizer, pack, train

    torch.set_num_threads(2)
    texts = load_dev(dev, ["fiction"])["fiction"]
    cfg = GPTConfig(context=256, n_layer=2, n_head=4, n_embd=128)
    tc = TrainConfig(
        tokens=steps * 16 * 256, batch_size=16, lr=3e-3, warmup=0.0, schedule="constant", grad_clip=0
    )

    def plain() -> float:
        m = BuiltinGPT(GPTConfig(**cfg.__dict__), seed=0)
        batches = Batches(pack(m, texts), 256, 16)
        opt = make_optimizer(m, tc)  # the same AdamW (groups, foreach=False) as assay's loop
        for k in range(steps):
            x = batches.batch(k)
            logits = m.module(x[:, :-1])
            loss = torch.nn.functional.cross_entropy(
                logits.reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1)
            )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        return float(loss.detach())

    def ours() -> float:
        m = BuiltinGPT(GPTConfig(**cfg.__dict__), seed=0)
        return float(train(m, texts, tc)["train_loss_last"])

    ours()  # warm-up (allocator, kernels)
    t_plain, _ = timed(plain, repeat=2)
    t_ours, _ = timed(ours, repeat=2)
    n = steps * 16 * 256
    report(
        "train",
        {
            "model": "GPT 2 layers, 128 wide, context 256, batch 16, byte tokens",
            "plain torch loop tokens/s": n / t_plain,
            "assay train tokens/s": n / t_ours,
            "ratio (goal >= 0.9)": t_plain / t_ours,
        },
    )


# --------------------------------------------------------------------------- export
def bench_export(dev: Path) -> None:
    """`assay export --format parquet` vs a plain pyarrow copy of the same rows (read the shards, take
    the selected rows, write zstd Parquet), same process."""
    import pyarrow.compute as pc

    from assay.config import parse_config
    from assay.pipeline.executor import LocalExecutor
    from assay.pipeline.export import export_parquet
    from assay.pipeline.run import run_select

    with tempfile.TemporaryDirectory() as d:
        cfg = parse_config(
            {
                "input": {"paths": [str(dev / "*.parquet")], "domain": {"field": "domain"}},
                "shard": {"target_mb": 32},
                "select": {"method": "all"},
                "mixture": {"solver": "temperature", "temperature": 2.0},
                "manifest": {"max_epochs": 10},
            },
            source="bench",
        )
        manifest = run_select(cfg, Path(d) / "run", LocalExecutor())
        shards = sorted((Path(d) / "run" / "shards").glob("*.parquet"))

        def plain(out: Path) -> int:
            out.mkdir()
            n = 0
            for k, p in enumerate(shards):
                t = pq.read_table(p)
                t = t.filter(pc.is_valid(t.column("id")))
                n += t.column("text").nbytes
                pq.write_table(t, out / f"{k:05d}.parquet", compression="zstd", compression_level=3)
            return n

        t_plain, nbytes = timed(lambda: plain(Path(tempfile.mkdtemp(dir=d)) / "x"), repeat=2)
        dest = Path(tempfile.mkdtemp(dir=d))
        t_ours, index = timed(
            lambda: export_parquet(manifest, Path(tempfile.mkdtemp(dir=dest)) / "x"), repeat=2
        )
        last = sorted(dest.glob("*/x"))[-1]
        ours_bytes = sum(
            pq.read_table(last / f["file"], columns=["text"]).column("text").nbytes for f in index["files"]
        )
        copied = sum(pq.read_metadata(p).num_rows for p in shards)
    report(
        "export",
        {
            "rows in the stream (with repeats) / rows copied": f"{index['rows']} / {copied}",
            "pyarrow copy MB/s of text": nbytes / 1e6 / t_plain,
            "assay export parquet MB/s of text": ours_bytes / 1e6 / t_ours,
            "ratio of MB/s (goal >= 0.5)": (ours_bytes / t_ours) / (nbytes / t_plain),
        },
    )


BENCHES = {
    "shard": bench_shard,
    "rss": bench_rss,
    "compression": bench_compression,
    "dsir": bench_dsir,
    "fasttext": bench_fasttext,
    "train": bench_train,
    "export": bench_export,
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dev", default=str(DEFAULT_DEV), help="the dev corpus folder (Parquet per domain)")
    ap.add_argument(
        "--only", default=",".join(BENCHES), help="comma-separated subset of " + ", ".join(BENCHES)
    )
    args = ap.parse_args()
    dev = Path(args.dev)
    if not dev.is_dir() or not list(dev.glob("*.parquet")):
        sys.exit(f"benchmarks: the dev corpus is missing: {dev} has no *.parquet (pass --dev PATH)")
    os.environ.setdefault("ASSAY_NO_BAR", "1")
    print(
        f"assay benchmarks on {dev} ({os.cpu_count()} cores, peak RSS of this process is reported per bench)"
    )
    for name in args.only.split(","):
        BENCHES[name.strip()](dev)
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\nmax RSS of the benchmark process: {rss_mb:.0f} MB")


if __name__ == "__main__":
    main()
