"""fastText classifier scores (``fasttext``): the probability of one label under any fastText
classifier file given by path (e.g. a DCLM-style quality model).

fastText reads one example per line, so newlines must go, the same way at training and at
inference: ``normalize`` (newline and carriage return → space) is used by this scorer and by
``write_training_file`` / ``train_classifier`` below. Predictions are batched (a list of texts per
call), which also avoids fastText 0.9.3's numpy-2 failure on single-string predict.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from assay.errors import ConfigError
from assay.scorers.base import SCORERS, Scorer


def normalize(text: str) -> str:
    """The one text normalisation for fastText training and inference."""
    return text.replace("\r", " ").replace("\n", " ")


def write_training_file(path: str | Path, examples: Iterable[tuple[str, str]]) -> None:
    """Write ``__label__<label> <normalized text>`` lines for (label, text) pairs."""
    with open(path, "w", encoding="utf-8") as f:
        for label, text in examples:
            f.write(f"__label__{label} {normalize(text)}\n")


def train_classifier(train_file: str | Path, out: str | Path, seed: int = 0, **kwargs: object) -> None:
    """Train a supervised fastText model (one thread, so it is deterministic) and save it."""
    import fasttext

    params: dict[str, object] = {
        "epoch": 10,
        "wordNgrams": 2,
        "dim": 32,
        "minCount": 1,
        "thread": 1,
        "seed": seed,
    }
    params.update(kwargs)
    model = fasttext.train_supervised(input=str(train_file), **params)
    model.save_model(str(out))


@dataclass
class FastTextParams:
    model: str = ""
    label: str = "__label__hq"

    def validate(self) -> None:
        if not self.model:
            raise ConfigError("model is required: the path of a fastText classifier (.bin or .ftz)")


@SCORERS.register("fasttext")
class FastTextScorer(Scorer):
    """Probability of ``label`` under a local fastText classifier."""

    name = "fasttext"
    version = "1"
    Params = FastTextParams

    def __init__(self, params: FastTextParams, target: object = None) -> None:
        super().__init__(params, None)
        self._check_model()

    def _check_model(self) -> None:
        p = Path(self.params.model)
        if not p.is_file():
            raise ConfigError(f"fasttext: model file {p} does not exist")

    def setup(self) -> None:
        import fasttext

        try:
            self._model = fasttext.load_model(self.params.model)
        except ValueError as e:
            raise ConfigError(f"fasttext: cannot load model {self.params.model}: {e}") from e
        labels = list(self._model.get_labels())
        label = (
            self.params.label
            if self.params.label.startswith("__label__")
            else f"__label__{self.params.label}"
        )
        if label not in labels:
            raise ConfigError(f"fasttext: model {self.params.model} has no label {label!r}; labels: {labels}")
        self._label = label
        self._k = len(labels)

    def score_batch(self, batch: pa.Table) -> pa.Array:
        texts = [normalize(t) for t in batch.column("text").to_pylist()]
        labels, probs = self._model.predict(texts, k=self._k, threshold=0.0)
        out = np.zeros(len(texts), dtype=np.float64)
        lab = self._label
        for i, (ls, ps) in enumerate(zip(labels, probs)):
            for name, p in zip(ls, ps):
                if name == lab:
                    out[i] = min(float(p), 1.0)
                    break
        return pa.array(out, pa.float64())
