"""Simple heuristic scorers: document length, and the Gopher rules' fraction of alphabetic words."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from assay.errors import ConfigError
from assay.scorers.base import SCORERS, Scorer


@dataclass
class LengthParams:
    unit: Literal["chars", "bytes", "words"] = "chars"
    log: bool = False  # score log1p(length) instead of length


@SCORERS.register("length")
class LengthScorer(Scorer):
    """Document length in characters, UTF-8 bytes or whitespace words (optionally log1p)."""

    name = "length"
    Params = LengthParams

    def score_batch(self, batch: pa.Table) -> pa.Array:
        text = batch.column("text")
        if self.params.unit == "chars":
            n = pc.utf8_length(text)
        elif self.params.unit == "bytes":
            n = pc.binary_length(text)
        else:
            n = pc.count_substring_regex(text, r"\S+")
        arr = n.to_numpy().astype(np.float64)
        return pa.array(np.log1p(arr) if self.params.log else arr, pa.float64())


@dataclass
class AlphaParams:
    min_word_chars: int = 1

    def validate(self) -> None:
        if self.min_word_chars < 1:
            raise ConfigError("min_word_chars must be >= 1")


_WORD = re.compile(r"\S+")
_ALPHA = re.compile(r"[^\W\d_]")


@SCORERS.register("alpha_words")
class AlphaWordsScorer(Scorer):
    """Fraction of words containing at least one alphabetic character (Gopher's "80% rule").
    A document without words scores 0."""

    name = "alpha_words"
    Params = AlphaParams

    def score_batch(self, batch: pa.Table) -> pa.Array:
        out = np.zeros(batch.num_rows, dtype=np.float64)
        for i, t in enumerate(batch.column("text").to_pylist()):
            words = [w for w in _WORD.findall(t) if len(w) >= self.params.min_word_chars]
            if words:
                out[i] = sum(1 for w in words if _ALPHA.search(w)) / len(words)
        return pa.array(out, pa.float64())
