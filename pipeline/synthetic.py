"""A synthetic skills corpus with a known prerequisite structure (LEGO-style), generated offline.

A seeded vocabulary of 4-letter words and a seeded permutation f of it define four skills:
- ``words``: lines of random vocabulary words (the inventory every other skill is written in);
- ``map``: lines ``w -> f(w)`` (learning f);
- ``chain`` (the usual target): lines ``w : f(w) f(f(w)) f(f(f(w)))`` (needs f, hence ``map``);
- ``noise``: lines of random letters (unrelated to the others).
Token shares (natural mixture) default to noise 55%, words 25%, map 10%, chain 10%, so the natural
mixture starves the target and its prerequisite. The true graph (row: trained skill, column:
evaluated skill) is ``GRAPH`` below.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

SKILLS = ["chain", "map", "noise", "words"]
GRAPH = {  # trained -> evaluated: 1 = strong transfer (read as 0.5 off the diagonal), 0 = none
    "chain": {"chain": 1, "map": 1, "noise": 0, "words": 1},
    "map": {"chain": 1, "map": 1, "noise": 0, "words": 1},
    "noise": {"chain": 0, "map": 0, "noise": 1, "words": 0},
    "words": {"chain": 1, "map": 1, "noise": 0, "words": 1},
}
SHARES = {"noise": 0.55, "words": 0.25, "map": 0.10, "chain": 0.10}


def _vocab(seed: int, n: int = 96) -> tuple[list[str], dict[str, str]]:
    rng = np.random.default_rng(seed)
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    words: list[str] = []
    while len(words) < n:
        w = "".join(rng.choice(letters, 4))
        if w not in words:
            words.append(w)
    perm = rng.permutation(n)
    return words, {w: words[perm[i]] for i, w in enumerate(words)}


def skill_docs(skill: str, n_docs: int, seed: int, vocab_seed: int = 0, lines: int = 24) -> list[str]:
    words, f = _vocab(vocab_seed)
    rng = np.random.default_rng(seed)
    docs = []
    for _ in range(n_docs):
        out = []
        for _ in range(lines):
            w = words[int(rng.integers(len(words)))]
            if skill == "words":
                out.append(" ".join(words[int(i)] for i in rng.integers(len(words), size=6)))
            elif skill == "map":
                out.append(f"{w} -> {f[w]}")
            elif skill == "chain":
                out.append(f"{w} : {f[w]} {f[f[w]]} {f[f[f[w]]]}")
            elif skill == "noise":
                out.append("".join(rng.choice(list("abcdefghijklmnopqrstuvwxyz "), 28)))
            else:
                raise ValueError(f"unknown skill {skill!r}; valid: {SKILLS}")
        docs.append("\n".join(out) + "\n")
    return docs


def write_corpus(
    out: Path, total_docs: int = 400, seed: int = 0, shares: dict[str, float] | None = None
) -> Path:
    """One JSONL file per skill under ``out`` (domain from the file name), and ``graph.json``."""
    shares = shares or SHARES
    out.mkdir(parents=True, exist_ok=True)
    for k, skill in enumerate(SKILLS):
        docs = skill_docs(skill, max(2, int(total_docs * shares[skill])), seed * 100 + k)
        with open(out / f"{skill}.jsonl", "w") as fh:
            fh.writelines(json.dumps({"text": d}) + "\n" for d in docs)
    (out / "graph.json").write_text(
        json.dumps({"skills": SKILLS, "graph": [[GRAPH[a][b] for b in SKILLS] for a in SKILLS]})
    )
    return out
