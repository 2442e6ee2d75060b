"""Proxy language models: a small GPT in plain torch (byte-level by default) and an adapter for local
Hugging Face causal LMs, behind one interface (``ProxyModel``): per-token and per-document loss,
a training step's loss, the parameters to take gradients of (all, named layers, or LoRA adapters),
save and load. No code path downloads anything: HF models load with ``local_files_only``.
"""

from __future__ import annotations

import json
import math
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from assay.errors import ConfigError

# ----------------------------------------------------------------------------- tokenizers


class ByteTokenizer:
    """UTF-8 bytes 0..255 and an end-of-document token 256."""

    spec = "bytes"
    vocab_size = 257
    eos = 256

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))


class FileTokenizer:
    """A local Hugging Face ``tokenizers`` JSON file; the end-of-document token is appended as a new id
    unless the file names one (``eos_token``)."""

    def __init__(self, path: str, eos_token: str | None = None) -> None:
        from assay.pipeline.tokenize import load_tokenizer_file

        self._tok = load_tokenizer_file(path)
        self.spec = f"file:{Path(path).resolve()}"
        size = self._tok.get_vocab_size(with_added_tokens=True)
        eid = self._tok.token_to_id(eos_token) if eos_token else None
        if eos_token and eid is None:
            raise ConfigError(f"tokenizer file {path} has no token {eos_token!r}")
        self.eos = eid if eid is not None else size
        self.vocab_size = size if eid is not None else size + 1

    def encode(self, text: str) -> list[int]:
        return list(self._tok.encode(text, add_special_tokens=False).ids)


def make_tokenizer(spec: str) -> ByteTokenizer | FileTokenizer:
    if spec == "bytes":
        return ByteTokenizer()
    if spec.startswith("file:"):
        return FileTokenizer(spec[5:])
    raise ConfigError(f"unknown tokenizer {spec!r}; valid: bytes, file:<tokenizer.json>")


# ----------------------------------------------------------------------------- LoRA


class LoRALinear(nn.Module):
    """y = W x + (alpha / r) · B A x, with W frozen, A ~ N(0, 1/r) and B = 0 at the start."""

    def __init__(self, base: nn.Linear, r: int, alpha: float) -> None:
        super().__init__()
        self.base = base
        self.r, self.scale = r, alpha / r
        g = torch.Generator().manual_seed(base.in_features * 7919 + base.out_features)
        self.lora_A = nn.Parameter(torch.randn(r, base.in_features, generator=g) / math.sqrt(r))  # (r, in)
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, r))  # (out, r)
        for p in self.base.parameters():
            p.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + (x @ self.lora_A.T @ self.lora_B.T) * self.scale


def add_lora(
    model: nn.Module, r: int = 8, alpha: float = 16.0, targets: tuple[str, ...] = ("qkv", "proj")
) -> int:
    """Wrap every nn.Linear whose attribute name is in ``targets``; freeze all non-LoRA weights.
    Returns the number of wrapped layers."""
    n = 0
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, nn.Linear) and name in targets:
                setattr(module, name, LoRALinear(child, r, alpha))
                n += 1
    if n == 0:
        raise ConfigError(f"LoRA: no nn.Linear named any of {targets} in the model")
    for pname, p in model.named_parameters():
        p.requires_grad_("lora_" in pname)
    return n


# ----------------------------------------------------------------------------- built-in GPT


@dataclass
class GPTConfig:
    vocab_size: int = 257
    context: int = 256
    n_layer: int = 2
    n_head: int = 4
    n_embd: int = 128
    tokenizer: str = "bytes"
    lora_r: int = 0
    lora_alpha: float = 16.0

    def validate(self) -> None:
        if self.n_embd % self.n_head:
            raise ConfigError(f"n_embd ({self.n_embd}) must be a multiple of n_head ({self.n_head})")
        if min(self.context, self.n_layer, self.n_head, self.n_embd) < 1:
            raise ConfigError("context, n_layer, n_head and n_embd must be >= 1")


class Block(nn.Module):
    def __init__(self, c: GPTConfig) -> None:
        super().__init__()
        self.n_head = c.n_head
        self.ln1 = nn.LayerNorm(c.n_embd)
        self.qkv = nn.Linear(c.n_embd, 3 * c.n_embd)
        self.proj = nn.Linear(c.n_embd, c.n_embd)
        self.ln2 = nn.LayerNorm(c.n_embd)
        self.fc = nn.Linear(c.n_embd, 4 * c.n_embd)
        self.out = nn.Linear(4 * c.n_embd, c.n_embd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape  # (B, T, C)
        q, k, v = self.qkv(self.ln1(x)).split(c, dim=2)  # 3 × (B, T, C)
        q, k, v = (
            z.view(b, t, self.n_head, c // self.n_head).transpose(1, 2) for z in (q, k, v)
        )  # (B, H, T, D)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (B, H, T, D)
        x = x + self.proj(y.transpose(1, 2).reshape(b, t, c))
        return x + self.out(F.gelu(self.fc(self.ln2(x))))


class GPT(nn.Module):
    """A small pre-LN GPT (nanoGPT-style) with tied input/output embeddings."""

    def __init__(self, c: GPTConfig, seed: int = 0) -> None:
        super().__init__()
        c.validate()
        self.config = c
        torch.manual_seed(seed)
        self.wte = nn.Embedding(c.vocab_size, c.n_embd)
        self.wpe = nn.Embedding(c.context, c.n_embd)
        self.blocks = nn.ModuleList(Block(c) for _ in range(c.n_layer))
        self.ln_f = nn.LayerNorm(c.n_embd)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Embedding):
                nn.init.normal_(m.weight, std=0.02)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        t = idx.shape[1]  # idx: (B, T)
        x = self.wte(idx) + self.wpe(torch.arange(t, device=idx.device))  # (B, T, C)
        for blk in self.blocks:
            x = blk(x)
        return self.ln_f(x) @ self.wte.weight.T  # (B, T, V)


# ----------------------------------------------------------------------------- the interface


class ProxyModel(ABC):
    """What scorers, solvers and ``assay eval`` need from a language model."""

    tokenizer: Any
    context: int
    module: nn.Module

    @abstractmethod
    def logits(self, idx: torch.Tensor) -> torch.Tensor:
        """(B, T) token ids -> (B, T, V) next-token logits."""

    def token_nll(self, seq: torch.Tensor) -> torch.Tensor:
        """(B, T+1) ids -> (B, T) NLL (nats) of each next token."""
        logits = self.logits(seq[:, :-1])  # (B, T, V)
        return F.cross_entropy(logits.transpose(1, 2).float(), seq[:, 1:], reduction="none")  # (B, T)

    def loss(self, seq: torch.Tensor) -> torch.Tensor:
        """Mean next-token NLL of a (B, T+1) batch: the training objective."""
        return self.token_nll(seq).mean()

    def encode_doc(self, text: str) -> list[int]:
        """[eos] + tokens: every document is predicted from the end-of-document token on."""
        return [self.tokenizer.eos, *self.tokenizer.encode(text)]

    @torch.no_grad()
    def doc_loss(self, text: str, stride: int | None = None) -> tuple[float, int]:
        """(sum of token NLL in nats, number of predicted tokens) of one document. Documents longer
        than the context are scored in windows: each window predicts the tokens after the previous
        window's end with up to ``context - stride`` tokens of left context (stride <= context)."""
        ids = self.encode_doc(text)
        stride = stride or self.context
        if not 0 < stride <= self.context:
            raise ConfigError(f"stride {stride} must be in 1..context ({self.context})")
        dev = next(self.module.parameters()).device
        total, n, done = 0.0, 0, 1  # ids[0] is the eos prompt, never predicted
        while done < len(ids):
            end = min(done + stride, len(ids))
            start = max(0, end - self.context - 1)
            window = torch.tensor(ids[start:end], device=dev)[None]  # (1, L)
            nll = self.token_nll(window)[0]  # (L-1,): predicts ids[start+1:end]
            keep = end - done  # the new tokens
            total += float(nll[-keep:].double().sum())
            n += keep
            done = end
        return total, n

    def grad_params(self, which: str | list[str] = "trainable") -> list[tuple[str, nn.Parameter]]:
        """Parameters to take gradients of: "all", "trainable" (requires_grad: LoRA adapters when
        present), "lora", or a list of name prefixes (layers)."""
        named = list(self.module.named_parameters())
        if which == "all":
            out = named
        elif which == "trainable":
            out = [(n, p) for n, p in named if p.requires_grad]
        elif which == "lora":
            out = [(n, p) for n, p in named if "lora_" in n]
        else:
            out = [(n, p) for n, p in named if any(n.startswith(pref) for pref in which)]
        if not out:
            raise ConfigError(f"no parameters match {which!r}")
        return out

    @abstractmethod
    def save(self, directory: Path) -> None: ...


class BuiltinGPT(ProxyModel):
    def __init__(self, config: GPTConfig, seed: int = 0, device: str = "cpu") -> None:
        self.config = config
        self.tokenizer = make_tokenizer(config.tokenizer)
        if config.vocab_size != self.tokenizer.vocab_size:
            config.vocab_size = self.tokenizer.vocab_size
        self.context = config.context
        self.module = GPT(config, seed).to(device)
        if config.lora_r:
            add_lora(self.module, config.lora_r, config.lora_alpha)

    def logits(self, idx: torch.Tensor) -> torch.Tensor:
        return self.module(idx)

    def save(self, directory: Path) -> None:
        from assay.pipeline.fsutil import atomic_path, write_json

        directory.mkdir(parents=True, exist_ok=True)
        write_json(directory / "config.json", {"kind": "assay-gpt", **asdict(self.config)})
        with atomic_path(directory / "model.pt") as tmp:
            torch.save(self.module.state_dict(), tmp)


class HFCausalLM(ProxyModel):
    """A Hugging Face causal LM from a local directory (``transformers`` needed; nothing downloaded)."""

    def __init__(self, directory: str, device: str = "cpu", gguf_file: str | None = None) -> None:
        try:
            import transformers
        except ImportError as e:
            raise ConfigError("HF models need the 'transformers' package (pip install 'assay[hf]')") from e
        if not Path(directory).is_dir():
            raise ConfigError(f"model directory {directory} does not exist")
        kw: dict[str, Any] = {"local_files_only": True}
        if gguf_file:
            kw["gguf_file"] = gguf_file
        try:
            hf_model: Any = transformers.AutoModelForCausalLM.from_pretrained(directory, **kw)
            self.module = hf_model.to(device)
            tok = transformers.AutoTokenizer.from_pretrained(directory, **kw)
        except (OSError, ValueError, KeyError) as e:
            raise ConfigError(f"{directory} is not a loadable causal LM: {e}") from e
        self.module.eval()
        self.directory = directory
        self.context = int(getattr(self.module.config, "max_position_embeddings", 1024))
        eos = tok.eos_token_id if tok.eos_token_id is not None else tok.bos_token_id
        if eos is None:
            raise ConfigError(f"the tokenizer in {directory} has no eos or bos token")

        class _Tok:
            spec = f"hf:{directory}"
            vocab_size = len(tok)

            def encode(self, text: str) -> list[int]:
                return list(tok(text, add_special_tokens=False)["input_ids"])

        self.tokenizer = _Tok()
        self.tokenizer.eos = int(eos)  # type: ignore[attr-defined]

    def logits(self, idx: torch.Tensor) -> torch.Tensor:
        return self.module(input_ids=idx).logits

    def add_lora(
        self, r: int = 8, alpha: float = 16.0, targets: tuple[str, ...] = ("q_proj", "v_proj")
    ) -> None:
        """LoRA through ``peft`` when installed, else the built-in adapters on the named linears."""
        try:
            import peft

            cfg = peft.LoraConfig(r=r, lora_alpha=alpha, target_modules=list(targets), lora_dropout=0.0)
            self.module = peft.get_peft_model(self.module, cfg)
        except ImportError:
            add_lora(self.module, r, alpha, targets)

    def save(self, directory: Path) -> None:
        hf_model: Any = self.module
        hf_model.save_pretrained(str(directory))


def load_model(spec: str, device: str = "cpu") -> ProxyModel:
    """``hf:<dir>`` for a local Hugging Face model, else a directory saved by ``BuiltinGPT.save``."""
    if spec.startswith("hf:"):
        return HFCausalLM(spec[3:], device=device)
    d = Path(spec)
    cfg_path = d / "config.json"
    if not cfg_path.is_file():
        raise ConfigError(f"model directory {d} has no config.json (expected an assay model or hf:<dir>)")
    try:
        cfg = json.loads(cfg_path.read_text())
    except json.JSONDecodeError as e:
        raise ConfigError(f"{cfg_path} is not valid JSON: {e}") from e
    if cfg.pop("kind", None) != "assay-gpt":
        raise ConfigError(f"{cfg_path} is not an assay model config (for a Hugging Face model use hf:{d})")
    from assay.typed import from_dict

    model = BuiltinGPT(from_dict(GPTConfig, cfg, source=str(cfg_path)), device=device)
    try:
        state = torch.load(d / "model.pt", map_location=device, weights_only=True)
        model.module.load_state_dict(state)
    except (OSError, RuntimeError) as e:
        raise ConfigError(f"cannot load weights {d / 'model.pt'} into the configured model: {e}") from e
    return model
