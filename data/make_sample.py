"""Rebuild data/sample/ (the demo corpus) from the product owner's dev corpus (../shared/corpora/dev).

Only permissively licensed or public-domain domains are taken (see data/sample/LICENSES.md).
Deterministic: documents of at most 30,000 characters, chosen by a hash of their source name.
Run: python data/make_sample.py [--dev ../shared/corpora/dev]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pyarrow.parquet as pq
import xxhash
import zstandard

TAKE = {"fiction": 45, "code-python": 70, "docs-python": 60, "code-go": 110}
MAX_CHARS = 30_000


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument(
        "--dev", default=str(Path(__file__).resolve().parents[1] / ".." / "shared" / "corpora" / "dev")
    )
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "sample"))
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for dom, n in TAKE.items():
        t = pq.read_table(Path(args.dev) / f"{dom}.parquet").to_pylist()
        rows = [r for r in t if 200 <= len(r["text"]) <= MAX_CHARS]
        rows.sort(key=lambda r: xxhash.xxh3_64_intdigest((r["source"] + r["text"][:64]).encode()))
        lines = "".join(
            json.dumps({"text": r["text"], "source": r["source"]}, ensure_ascii=False) + "\n"
            for r in rows[:n]
        )
        data = zstandard.ZstdCompressor(level=19).compress(lines.encode("utf-8"))
        (out / f"{dom}.jsonl.zst").write_bytes(data)
        print(dom, n, len(lines) // 1000, "KB text,", len(data) // 1000, "KB compressed")


if __name__ == "__main__":
    main()
