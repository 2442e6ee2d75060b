"""Token counters. Budgets are tokens, so every document carries ``n_tokens``.

- ``bytes4`` (default): ceil(UTF-8 bytes / 4), the usual ~4 bytes/token of BPE tokenizers on English.
- ``whitespace``: number of whitespace-separated words.
- ``tokenizers:<path>``: a local Hugging Face ``tokenizers`` JSON file (no special tokens added).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from assay.errors import ConfigError


class TokenCounter(Protocol):
    spec: str

    def count(self, texts: pa.Array) -> pa.Array: ...


class Bytes4:
    spec = "bytes4"

    def count(self, texts: pa.Array) -> pa.Array:
        nbytes = pc.binary_length(texts).to_numpy(zero_copy_only=False).astype(np.int64)
        return pa.array((nbytes + 3) // 4, pa.int64())


class Whitespace:
    spec = "whitespace"

    def count(self, texts: pa.Array) -> pa.Array:
        return pc.cast(pc.count_substring_regex(texts, r"\S+"), pa.int64())


def load_tokenizer_file(path: str) -> Any:
    """A ``tokenizers.Tokenizer`` from a local JSON file, with clear errors."""
    try:
        from tokenizers import Tokenizer
    except ImportError as e:
        raise ConfigError("a tokenizer file needs the 'tokenizers' package") from e
    if not Path(path).is_file():
        raise ConfigError(f"tokenizer file {path} does not exist")
    try:
        return Tokenizer.from_file(path)
    except Exception as e:
        raise ConfigError(f"tokenizer file {path} is not a valid tokenizers JSON file: {e}") from e


class HFTokenizer:
    def __init__(self, path: str) -> None:
        self.spec = f"tokenizers:{path}"
        self._tok = load_tokenizer_file(path)

    def count(self, texts: pa.Array) -> pa.Array:
        enc = self._tok.encode_batch(texts.to_pylist(), add_special_tokens=False)
        return pa.array([len(e.ids) for e in enc], pa.int64())


def get_counter(spec: str) -> TokenCounter:
    if spec == "bytes4":
        return Bytes4()
    if spec == "whitespace":
        return Whitespace()
    if spec.startswith("tokenizers:"):
        return HFTokenizer(spec.split(":", 1)[1])
    raise ConfigError(f"unknown tokenizer {spec!r}; valid: bytes4, whitespace, tokenizers:<path.json>")
