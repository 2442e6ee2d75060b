"""Do the mixture solvers help? Two experiments, each training the same proxy model for the same
tokens on every schedule's stream and reporting held-out loss.

1. ``skills``: the synthetic skills corpus (assay.pipeline.synthetic: words -> map -> chain, plus
   unrelated noise) -- Skill-It (offline, target ``chain``, the known graph) vs uniform vs natural;
   reports the target skill's held-out loss.
2. ``cooldown``: ``manpages-intl`` of the dev corpus with the language as the domain (naturally
   imbalanced) -- Cooldown vs fixed temperature vs natural; reports per-language held-out loss.

    python benchmarks/mixture_quality.py [--only skills,cooldown] [--dev ../shared/corpora/dev]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import xxhash

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DEV = REPO.parent / "shared" / "corpora" / "dev"


def train_and_eval(
    manifest: Path, heldout: dict[str, list[str]], tokens: int, seed: int = 0
) -> dict[str, Any]:
    from assay.pipeline.evaluate import RunDocs, build_streams
    from assay.pipeline.models import BuiltinGPT, GPTConfig
    from assay.pipeline.train import TrainConfig, train

    ids = build_streams(manifest, [], set(), seed)["manifest"]
    texts = RunDocs(manifest.parent).texts(ids)
    model = BuiltinGPT(GPTConfig(context=256, n_layer=2, n_head=4, n_embd=128), seed=seed)
    t0 = time.perf_counter()
    info = train(
        model,
        [texts[i] for i in ids],
        TrainConfig(tokens=tokens, batch_size=16, lr=3e-3, seed=seed, allow_repeat=True),
    )
    losses = {}
    for dom, docs in sorted(heldout.items()):
        tot, n = 0.0, 0
        for t in docs:
            a, k = model.doc_loss(t[:3000])
            tot, n = tot + a, n + k
        losses[dom] = tot / n
    return {"losses": losses, "epochs": info["epochs"], "seconds": round(time.perf_counter() - t0)}


def run_config(cfg: dict[str, Any], out: Path) -> Path:
    import yaml

    from assay.config import parse_config
    from assay.pipeline.executor import LocalExecutor
    from assay.pipeline.run import run_select

    out.mkdir(parents=True, exist_ok=True)
    (out / "config.in.yaml").write_text(yaml.safe_dump(cfg))
    return run_select(parse_config(cfg, source=str(out / "config.in.yaml")), out, LocalExecutor())


def skills(out: Path, tokens: int) -> dict[str, Any]:
    from assay.pipeline.synthetic import skill_docs, write_corpus

    corpus = write_corpus(out / "corpus", total_docs=600, seed=0)
    heldout = {"chain": skill_docs("chain", 20, seed=999), "map": skill_docs("map", 20, seed=998)}
    base = {
        "input": {"paths": [str(corpus / "*.jsonl")], "domain": {"path_pattern": "{domain}.jsonl"}},
        "select": {"method": "all"},
        "manifest": {"max_epochs": 100},
        "seed": 0,
    }
    solvers = {
        "skillit": {
            "solver": "skillit",
            "graph": str(corpus / "graph.json"),
            "target": ["chain"],
            "rounds": 8,
            "tokens_per_round": 60_000,
            "eta": 0.5,
        },
        "uniform": {"solver": "uniform"},
        "natural": {"solver": "natural"},
    }
    res = {}
    for name, mix in solvers.items():
        m = run_config({**base, "mixture": mix}, out / name)
        res[name] = train_and_eval(m, heldout, tokens)
        res[name]["phase_weights"] = [ph["weights"] for ph in json.loads(m.read_text())["schedule"]["phases"]]
        print(name, res[name]["losses"], flush=True)
    return res


def cooldown(out: Path, dev: Path, tokens: int, total_tokens: int) -> dict[str, Any]:
    t = pq.read_table(dev / "manpages-intl.parquet", columns=["text", "lang"])
    keep, held = [], {}
    for i, (text, lang) in enumerate(zip(t.column("text").to_pylist(), t.column("lang").to_pylist())):
        if xxhash.xxh3_64_intdigest(text.encode()) % 10 == 0 and len(held.get(lang, [])) < 15:
            held.setdefault(lang, []).append(text)
        else:
            keep.append(i)
    (out / "corpus").mkdir(parents=True, exist_ok=True)
    pq.write_table(t.take(pa.array(keep)), out / "corpus" / "manpages-intl.parquet")
    base = {
        "input": {"paths": [str(out / "corpus" / "manpages-intl.parquet")], "domain": {"field": "lang"}},
        "select": {"method": "all"},
        "manifest": {"total_tokens": total_tokens, "max_epochs": 8},
        "seed": 0,
    }
    solvers = {
        "natural": {"solver": "natural"},
        "temperature_3": {"solver": "temperature", "temperature": 3.0},
        "cooldown_3_to_1": {
            "solver": "cooldown",
            "t_start": 3.0,
            "t_end": 1.0,
            "cool_fraction": 0.5,
            "phases": 8,
        },
    }
    res = {}
    for name, mix in solvers.items():
        m = run_config({**base, "mixture": mix}, out / name)
        res[name] = train_and_eval(m, held, tokens)
        ls = res[name]["losses"]
        res[name]["mean_over_languages"] = sum(ls.values()) / len(ls)
        res[name]["domain_tokens"] = json.loads(m.read_text())["domains"]
        print(name, {k: round(v, 4) for k, v in ls.items()}, flush=True)
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dev", default=str(DEFAULT_DEV))
    ap.add_argument("--out", default=str(REPO / "runs" / "mixture_quality"))
    ap.add_argument("--only", default="skills,cooldown")
    ap.add_argument("--tokens", type=int, default=800_000, help="proxy training tokens per schedule")
    args = ap.parse_args()
    os.environ.setdefault("ASSAY_NO_BAR", "1")
    out = Path(args.out)
    results: dict[str, Any] = {}
    if "skills" in args.only:
        results["skills"] = skills(out / "skills", args.tokens)
    if "cooldown" in args.only:
        dev = Path(args.dev)
        if not (dev / "manpages-intl.parquet").is_file():
            sys.exit(f"mixture_quality: the dev corpus is missing: {dev / 'manpages-intl.parquet'}")
        results["cooldown"] = cooldown(out / "cooldown", dev, args.tokens, total_tokens=args.tokens // 4)
    (out / "results.json").write_text(json.dumps(results, indent=1, sort_keys=True))
    for exp, res in results.items():
        print(f"\n== {exp} (held-out loss, nats/token; bits = nats / {math.log(2):.4f})")
        doms = sorted(next(iter(res.values()))["losses"])
        print("| schedule | " + " | ".join(doms) + " |")
        print("|---|" + "---|" * len(doms))
        for name, r in res.items():
            print(f"| {name} | " + " | ".join(f"{r['losses'][d]:.4f}" for d in doms) + " |")


if __name__ == "__main__":
    main()
