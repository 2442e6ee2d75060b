from __future__ import annotations

import math

import pyarrow as pa

from assay.scorers.heuristic import AlphaParams, AlphaWordsScorer, LengthParams, LengthScorer

TEXTS = ["", "héllo wörld", "a 1 2 3", "x" * 10]


def test_length_units() -> None:
    t = pa.table({"id": ["0", "1", "2", "3"], "text": TEXTS})
    chars = LengthScorer(LengthParams()).score_table(t)[0]["score"].to_pylist()
    assert chars == [0.0, 11.0, 7.0, 10.0]
    assert LengthScorer(LengthParams(unit="bytes")).score_table(t)[0]["score"].to_pylist() == [0, 13, 7, 10]
    assert LengthScorer(LengthParams(unit="words")).score_table(t)[0]["score"].to_pylist() == [0, 2, 4, 1]
    logs = LengthScorer(LengthParams(log=True)).score_table(t)[0]["score"].to_pylist()
    assert logs == [math.log1p(c) for c in chars]


def test_alpha_words() -> None:
    t = pa.table({"id": ["0", "1", "2", "3"], "text": TEXTS})
    assert AlphaWordsScorer(AlphaParams()).score_table(t)[0]["score"].to_pylist() == [0.0, 1.0, 0.25, 1.0]
