"""The run config: one YAML file = one reproducible run. See configs/demo.yaml and README "Config"."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from assay.errors import ConfigError
from assay.typed import from_dict, to_dict


@dataclass
class DomainConfig:
    """Where a document's domain comes from: exactly one of field / path_pattern / value."""

    field: str | None = None
    path_pattern: str | None = None
    value: str | None = None

    def validate(self) -> None:
        given = [k for k in ("field", "path_pattern", "value") if getattr(self, k) is not None]
        if len(given) > 1:
            raise ConfigError(f"domain: give only one of field/path_pattern/value, got {given}")
        if self.path_pattern is not None and "{domain}" not in self.path_pattern:
            raise ConfigError("domain.path_pattern must contain '{domain}', e.g. '{domain}/*.jsonl'")

    @property
    def constant(self) -> str | None:
        if self.field is None and self.path_pattern is None:
            return self.value if self.value is not None else "default"
        return None


@dataclass
class InputConfig:
    paths: list[str]
    format: Literal["auto", "jsonl", "parquet", "hf_disk", "hf_load"] = "auto"
    text_field: str = "text"
    domain: DomainConfig = field(default_factory=DomainConfig)
    builder: str | None = (
        None  # datasets.load_dataset builder for format hf_load ("json", "csv", "text", ...)
    )
    on_error: Literal["fail", "skip"] = "fail"

    def validate(self) -> None:
        if not self.paths:
            raise ConfigError("input.paths is empty")
        if self.format == "hf_load" and not self.builder:
            raise ConfigError("input.builder is required for format 'hf_load' (e.g. 'json', 'csv')")


@dataclass
class ShardConfig:
    target_mb: float = 256.0
    tokenizer: str = "bytes4"  # bytes4 | whitespace | tokenizers:<path to tokenizer.json>
    batch_rows: int = 4096
    spill_mb: float = 128.0
    compression_level: int = 3

    def validate(self) -> None:
        if self.target_mb <= 0 or self.spill_mb <= 0 or self.batch_rows <= 0:
            raise ConfigError("shard.target_mb, shard.spill_mb and shard.batch_rows must be > 0")


@dataclass
class ScorerConfig:
    name: str
    params: dict[str, Any] = field(default_factory=dict)
    batch_rows: int = 1024


@dataclass
class BudgetConfig:
    """Token budget: ``fraction`` of the available tokens, or an absolute number of ``tokens``."""

    fraction: float | None = None
    tokens: int | None = None

    def validate(self) -> None:
        if (self.fraction is None) == (self.tokens is None):
            raise ConfigError("budget: give exactly one of fraction (0 < f <= 1) or tokens (a count)")
        if self.fraction is not None and not 0 < self.fraction <= 1:
            raise ConfigError(f"budget.fraction must be in (0, 1], got {self.fraction}")
        if self.tokens is not None and self.tokens <= 0:
            raise ConfigError(f"budget.tokens must be > 0, got {self.tokens}")


@dataclass
class SelectConfig:
    method: Literal["topk", "threshold", "gumbel", "all"] = "topk"
    by: str | None = None  # scorer name whose score ranks documents
    budget: BudgetConfig = field(default_factory=lambda: BudgetConfig(fraction=0.1))
    threshold: float | None = None
    temperature: float = 1.0  # gumbel: noise scale relative to scores
    per_domain: bool = True
    ascending: bool = False  # True: lower scores are better
    exclude_targets: bool = True  # drop documents a scorer used as its target set

    def validate(self) -> None:
        if self.method != "all" and self.by is None:
            raise ConfigError(f"select.by is required for method {self.method!r}")
        if self.method == "threshold" and self.threshold is None:
            raise ConfigError("select.threshold is required for method 'threshold'")
        if self.temperature <= 0:
            raise ConfigError("select.temperature must be > 0")


@dataclass
class MixtureConfig:
    solver: str = "natural"
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class ManifestConfig:
    total_tokens: float | None = None  # default: the selected tokens
    max_epochs: float = 4.0
    exports: list[str] = field(default_factory=list)


@dataclass
class ExecutionConfig:
    executor: Literal["ray", "local"] = "ray"
    workers: int | None = None
    address: str | None = None
    retries: int = 2


@dataclass
class RunConfig:
    input: InputConfig
    shard: ShardConfig = field(default_factory=ShardConfig)
    scorers: list[ScorerConfig] = field(default_factory=list)
    select: SelectConfig = field(default_factory=SelectConfig)
    mixture: MixtureConfig = field(default_factory=MixtureConfig)
    manifest: ManifestConfig = field(default_factory=ManifestConfig)
    execution: ExecutionConfig = field(default_factory=ExecutionConfig)
    seed: int = 0

    def validate(self) -> None:
        names = [s.name for s in self.scorers]
        if len(set(names)) != len(names):
            raise ConfigError(f"scorers: each scorer may appear once, got {names}")
        if self.select.by is not None and self.select.by not in names:
            raise ConfigError(f"select.by {self.select.by!r} is not one of the configured scorers {names}")

    def to_dict(self) -> dict[str, Any]:
        """What defines the run's results: everything but ``execution`` (how it runs, not what)."""
        d: dict[str, Any] = to_dict(self)
        d.pop("execution")
        return d

    def digest(self) -> str:
        blob = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":")).encode()
        return hashlib.blake2b(blob, digest_size=16).hexdigest()


def _scorer_entries(raw: Any, source: str) -> Any:
    """Accept ``{name: compression, level: 9}`` shorthand: keys other than name/batch_rows are params."""
    if not isinstance(raw, list):
        return raw
    out = []
    for i, item in enumerate(raw):
        if isinstance(item, str):
            item = {"name": item}
        if not isinstance(item, dict):
            raise ConfigError(f"scorers[{i}] in {source}: expected a mapping, got {item!r}")
        item = dict(item)
        params = dict(item.pop("params", {}) or {})
        entry = {k: item.pop(k) for k in ("name", "batch_rows") if k in item}
        params.update(item)
        out.append({**entry, "params": params})
    return out


def _solver_entry(raw: Any) -> Any:
    if not isinstance(raw, dict):
        return raw
    raw = dict(raw)
    params = dict(raw.pop("params", {}) or {})
    solver = raw.pop("solver", "natural")
    params.update(raw)
    return {"solver": solver, "params": params}


def parse_config(data: Any, source: str, base_dir: Path | None = None) -> RunConfig:
    """Build a RunConfig from a loaded YAML mapping. Relative input paths resolve against ``base_dir``."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level, got {type(data).__name__}")
    data = dict(data)
    if "scorers" in data:
        data["scorers"] = _scorer_entries(data["scorers"], source)
    if "mixture" in data:
        data["mixture"] = _solver_entry(data["mixture"])
    if isinstance(data.get("input", {}).get("domain"), str):
        data["input"] = {**data["input"], "domain": {"field": data["input"]["domain"]}}
    cfg = from_dict(RunConfig, data, source=source)
    if base_dir is not None:
        cfg.input.paths = [os.path.normpath(base_dir / p) for p in cfg.input.paths]
    _check_plugins(cfg, source)
    return cfg


def _check_plugins(cfg: RunConfig, source: str) -> None:
    """Resolve scorer and solver names and their params now, so typos fail before any work starts."""
    from assay.scorers.base import get_scorer_class, parse_params
    from assay.selectors.mixture import get_solver, parse_solver_params

    for i, sc in enumerate(cfg.scorers):
        cls = get_scorer_class(sc.name, where=f"scorers[{i}].name in {source}")
        parse_params(cls, sc.params, source=f"scorers[{i}] ({sc.name}) in {source}")
    parse_solver_params(
        get_solver(cfg.mixture.solver, where=f"mixture.solver in {source}"),
        cfg.mixture.params,
        source=f"mixture ({cfg.mixture.solver}) in {source}",
    )


def load_config(path: str | Path) -> RunConfig:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"cannot read config {p}: {e.strerror or e}") from e
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"{p}: invalid YAML: {e}") from e
    return parse_config(data, source=str(p), base_dir=p.resolve().parent)
