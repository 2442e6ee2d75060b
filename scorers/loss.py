"""Per-document loss under a proxy language model (``loss``): sum of token NLL, tokens, characters and
bits per character (the score). Documents longer than the context are scored in strided windows
(``ProxyModel.doc_loss``). Used by ``assay loss``; PreSelect-style scorers build on it."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from assay.errors import ConfigError
from assay.scorers.base import SCORERS, Scorer


@dataclass
class LossParams:
    model: str = ""  # an assay model directory, or hf:<local dir>
    stride: int | None = None  # tokens; default: the context
    device: str = "cpu"
    threads: int = 1  # torch intra-op threads per worker

    def validate(self) -> None:
        if not self.model:
            raise ConfigError("model is required: an assay model directory or hf:<local dir>")


@SCORERS.register("loss")
class LossScorer(Scorer):
    """Bits per character under a local proxy model (extras: nll, tokens, chars)."""

    name = "loss"
    version = "1"
    Params = LossParams
    extra_schema = (("nll", pa.float64()), ("tokens", pa.int64()), ("chars", pa.int64()))

    def setup(self) -> None:
        import torch

        from assay.pipeline.models import load_model

        torch.set_num_threads(self.params.threads)
        self._model = load_model(self.params.model, device=self.params.device)
        self._model.module.eval()
        stride = self.params.stride or self._model.context
        if not 0 < stride <= self._model.context:
            raise ConfigError(f"loss: stride {stride} must be in 1..context ({self._model.context})")
        self._stride = stride

    def score_batch(self, batch: pa.Table) -> pa.Table:
        texts = batch.column("text").to_pylist()
        nll = np.zeros(len(texts))
        toks = np.zeros(len(texts), dtype=np.int64)
        chars = np.array([len(t) for t in texts], dtype=np.int64)
        for i, t in enumerate(texts):
            nll[i], toks[i] = self._model.doc_loss(t, self._stride)
        bpc = np.where(chars > 0, nll / np.maximum(chars, 1) / math.log(2), 0.0)
        return pa.table({"score": bpc, "nll": nll, "tokens": toks, "chars": chars})
