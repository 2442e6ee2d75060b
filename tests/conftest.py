"""Shared fixtures: tiny real corpora written per test, one local Ray cluster per session."""

from __future__ import annotations

import gzip
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

os.environ.setdefault("ASSAY_NO_BAR", "1")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "data" / "sample"

# Real multi-domain text, small enough to shard and score in well under a second.
PROSE = [
    "It is a truth universally acknowledged, that a single man in possession of a good fortune, "
    "must be in want of a wife.",
    "However little known the feelings or views of such a man may be on his first entering a "
    "neighbourhood, this truth is so well fixed in the minds of the surrounding families.",
    "My dear Mr. Bennet, said his lady to him one day, have you heard that Netherfield Park is let at last?",
    "Mr. Bennet replied that he had not. But it is, returned she; for Mrs. Long has just been here.",
    "Emma Woodhouse, handsome, clever, and rich, with a comfortable home and happy disposition.",
    "The family of Dashwood had long been settled in Sussex. Their estate was large.",
]
CODE = [
    "def add(a, b):\n    return a + b\n",
    "import os\n\ndef list_files(path):\n    return sorted(os.listdir(path))\n",
    "class Stack:\n    def __init__(self):\n        self.items = []\n\n    def push(self, x):\n        self.items.append(x)\n",
    "for i in range(10):\n    if i % 2 == 0:\n        print(i)\n",
    "def fib(n):\n    a, b = 0, 1\n    for _ in range(n):\n        a, b = b, a + b\n    return a\n",
    "with open('data.txt') as f:\n    lines = [line.strip() for line in f]\n",
]


def write_jsonl(path: Path, rows: list[Any], compress: str | None = None) -> Path:
    data = "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows).encode()
    if compress == "gz":
        data = gzip.compress(data)
    elif compress == "zst":
        import zstandard

        data = zstandard.ZstdCompressor().compress(data)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    """Two domains in two folders (domain from the path), with exact duplicates across files."""
    root = tmp_path / "corpus"
    write_jsonl(root / "prose" / "a.jsonl", [{"text": t} for t in PROSE[:4]])
    write_jsonl(root / "prose" / "b.jsonl.gz", [{"text": t} for t in PROSE[2:]], compress="gz")  # 2 dups
    write_jsonl(
        root / "code" / "a.jsonl.zst", [{"text": t} for t in CODE + CODE[:1]], compress="zst"
    )  # 1 dup
    return root


def make_config(tmp_path: Path, corpus: Path, **overrides: Any) -> Path:
    cfg: dict[str, Any] = {
        "input": {"paths": [str(corpus / "*" / "*.jsonl*")], "domain": {"path_pattern": "{domain}/*"}},
        "shard": {"target_mb": 0.0005},
        "scorers": [{"name": "length"}],
        "select": {"method": "topk", "by": "length", "budget": {"fraction": 0.5}},
        "mixture": {"solver": "natural"},
        "execution": {"executor": "local"},
        "seed": 3,
    }
    for k, v in overrides.items():
        cfg[k] = v
    p = tmp_path / "run.yaml"
    p.write_text(yaml.safe_dump(cfg))
    return p


@pytest.fixture(scope="session")
def ray_executor() -> Iterator[Any]:
    """One real local Ray cluster (2 CPUs) for the whole session."""
    from assay.pipeline.executor import RayExecutor

    ex = RayExecutor(workers=2)
    yield ex
    ex.close()


@pytest.fixture
def local_executor() -> Any:
    from assay.pipeline.executor import LocalExecutor

    return LocalExecutor()


def tree_bytes(root: Path, skip: tuple[str, ...] = ("_state", "catalog.duckdb")) -> dict[str, bytes]:
    """Every output file's bytes, keyed by relative path (markers and the catalog index excluded)."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root)
        if p.is_file() and not any(part in skip for part in rel.parts):
            out[str(rel)] = p.read_bytes()
    return out


os.environ.setdefault(
    "SOURCE_DATE_EPOCH", "1767225600"
)  # manifests' `created`: fixed, so reruns compare bytes
