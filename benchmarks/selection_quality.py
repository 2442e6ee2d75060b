"""Does selection toward a target help? On the dev corpus (10 real domains), hold out a sample of
``code-python`` as the target, select the top ``fraction`` of all tokens by each scorer (global
top-k, natural mixture of what is selected), train the same proxy model on each selection's stream
and on the baselines (random documents with the same domain allocation as the first selection;
random documents from the whole pool), and report the held-out target loss at equal tokens.

    python benchmarks/selection_quality.py [--dev ../shared/corpora/dev] [--tokens 1000000] [--out DIR]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DEV = REPO.parent / "shared" / "corpora" / "dev"

SCORERS = {
    "compression": {"name": "compression", "mode": "fast", "threads": 1},
    "dsir": {"name": "dsir"},
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dev", default=str(DEFAULT_DEV))
    ap.add_argument("--out", default=str(REPO / "runs" / "selection_quality"))
    ap.add_argument("--target", default="code-python")
    ap.add_argument("--target-docs", type=int, default=100)
    ap.add_argument("--fraction", type=float, default=0.05)
    ap.add_argument("--tokens", type=int, default=1_000_000, help="training tokens per stream (bytes)")
    ap.add_argument("--scorers", default="compression,dsir")
    args = ap.parse_args()
    dev = Path(args.dev)
    if not list(dev.glob("*.parquet")):
        sys.exit(f"selection_quality: the dev corpus is missing: {dev} has no *.parquet (pass --dev PATH)")
    os.environ.setdefault("ASSAY_NO_BAR", "1")
    from assay.config import parse_config
    from assay.pipeline.evaluate import EvalConfig, evaluate
    from assay.pipeline.executor import RayExecutor
    from assay.pipeline.models import GPTConfig
    from assay.pipeline.run import run_select
    from assay.pipeline.train import TrainConfig

    out = Path(args.out)
    manifests = []
    ex = RayExecutor(workers=2)
    try:
        for name in args.scorers.split(","):
            target = {"domain": args.target, "sample": args.target_docs, "seed": 0}
            cfg = {
                "input": {"paths": [str(dev / "*.parquet")], "domain": {"field": "domain"}},
                "shard": {"target_mb": 16},
                "scorers": [{**SCORERS[name], "target": target}],
                "select": {
                    "method": "topk",
                    "by": name,
                    "budget": {"fraction": args.fraction},
                    "per_domain": False,
                },
                "mixture": {"solver": "natural"},
                "seed": 0,
            }
            (out / name).mkdir(parents=True, exist_ok=True)
            (out / name / "config.yaml").write_text(yaml.safe_dump(cfg))
            t0 = time.perf_counter()
            manifests.append(run_select(parse_config(cfg, source=f"{name} config"), out / name, ex))
            print(f"{name}: selected in {time.perf_counter() - t0:.0f}s", flush=True)
    finally:
        ex.close()
    ecfg = EvalConfig(
        model=GPTConfig(context=256, n_layer=2, n_head=4, n_embd=128),
        train=TrainConfig(tokens=args.tokens, batch_size=16, lr=3e-3),
        eval_points=6,
        max_target_docs=args.target_docs,
    )
    t0 = time.perf_counter()
    evaluate(manifests, f"domain:{args.target}", ecfg, out / "eval", names=args.scorers.split(","))
    print((out / "eval" / "eval.md").read_text())
    print(f"eval in {time.perf_counter() - t0:.0f}s; plot: {out / 'eval' / 'eval.png'}")


if __name__ == "__main__":
    main()
