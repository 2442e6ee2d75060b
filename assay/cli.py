"""The ``assay`` command line: each command parses, loads config and calls one library function."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from dataclasses import replace
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar

import click
import yaml

from assay.errors import AssayError, ConfigError

F = TypeVar("F", bound=Callable[..., Any])


def _handle_errors(fn: F) -> F:
    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        debug = click.get_current_context().find_root().params.get("debug", False)
        try:
            return fn(*args, **kwargs)
        except AssayError as e:
            if debug:
                raise
            click.echo(f"error: {e}", err=True)
            sys.exit(e.exit_code)

    return wrapper  # type: ignore[return-value]


@click.group()
@click.option("--debug", is_flag=True, help="Show tracebacks.")
@click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors.")
@click.version_option(package_name="assay")
def main(debug: bool, quiet: bool) -> None:
    """assay: data selection and mixture optimization for LM training data."""
    logging.basicConfig(
        level=logging.WARNING if quiet else logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S"
    )


def _executor_overrides(cfg: Any, executor: str | None, workers: int | None, address: str | None) -> Any:
    ex = cfg.execution
    if executor:
        ex = replace(ex, executor=executor)
    if workers:
        ex = replace(ex, workers=workers)
    if address:
        ex = replace(ex, address=address, executor="ray")
    return replace(cfg, execution=ex)


_exec_opts = [
    click.option("--executor", type=click.Choice(["ray", "local"]), help="Override execution.executor."),
    click.option("--workers", type=int, help="Parallel workers (local Ray CPUs)."),
    click.option("--address", help="Join this Ray cluster (else RAY_ADDRESS, else start a local Ray)."),
]


def exec_options(fn: F) -> F:
    for opt in reversed(_exec_opts):
        fn = opt(fn)
    return fn


@main.command()
@click.option(
    "--config", "config_path", required=True, type=click.Path(dir_okay=False), help="Run config YAML."
)
@click.option("--out", type=click.Path(file_okay=False), help="Run directory (default runs/<config name>).")
@exec_options
@_handle_errors
def select(
    config_path: str, out: str | None, executor: str | None, workers: int | None, address: str | None
) -> None:
    """Shard, score, select and mix a corpus; write RUN/manifest.json."""
    from assay.config import load_config
    from assay.pipeline.run import run_select

    cfg = _executor_overrides(load_config(config_path), executor, workers, address)
    run_dir = Path(out or Path("runs") / Path(config_path).stem)
    manifest = run_select(cfg, run_dir, source=config_path)
    click.echo(f"manifest written: {manifest}")


@main.command()
@click.option("--config", "config_path", required=True, type=click.Path(dir_okay=False))
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Run directory.")
@exec_options
@_handle_errors
def shard(config_path: str, out: str, executor: str | None, workers: int | None, address: str | None) -> None:
    """Only shard the config's input into OUT/shards (ids, tokens, dedup)."""
    from assay.config import load_config
    from assay.pipeline.executor import make_executor
    from assay.pipeline.fsutil import write_json
    from assay.pipeline.shard import run_shard

    cfg = _executor_overrides(load_config(config_path), executor, workers, address)
    ex = make_executor(
        cfg.execution.executor, cfg.execution.workers, cfg.execution.address, cfg.execution.retries
    )
    try:
        stats = run_shard(cfg.input, cfg.shard, Path(out), ex)
    finally:
        ex.close()
    write_json(Path(out) / "stats" / "shard.json", stats)
    docs = sum(d["docs"] for d in stats["domains"].values())
    dups = sum(d["duplicates"] for d in stats["domains"].values())
    click.echo(
        f"{len(stats['shards'])} shards, {docs} documents, {dups} duplicates removed, "
        f"{stats['rejects']} rejected rows"
    )


def _parse_param(raw: str) -> tuple[list[str], Any]:
    if "=" not in raw:
        raise ConfigError(f"--param {raw!r}: expected key=value (e.g. level=9 or target.file=t.jsonl)")
    key, val = raw.split("=", 1)
    try:
        value = yaml.safe_load(val) if val else ""
    except yaml.YAMLError as e:
        raise ConfigError(f"--param {raw!r}: cannot parse value: {e}") from e
    return key.split("."), value


def params_from_cli(raws: tuple[str, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for raw in raws:
        keys, value = _parse_param(raw)
        node = out
        for k in keys[:-1]:
            node = node.setdefault(k, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--param {raw!r}: {k} is already a value")
        node[keys[-1]] = value
    return out


@main.command()
@click.option("--scorer", "scorer_name", required=True, help="Scorer name (see `assay scorers`).")
@click.option(
    "--param", "params", multiple=True, help="key=value (dotted keys for nested: target.file=t.jsonl)."
)
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Output Parquet file.")
@click.option("--text-field", default="text", show_default=True)
@click.option("--domain-field", default=None, help="Field holding the domain (for target.domain).")
@click.option("--format", "fmt", default="auto", type=click.Choice(["auto", "jsonl", "parquet", "hf_disk"]))
@click.option("--batch-rows", default=1024, show_default=True)
@click.argument("inputs", nargs=-1, required=True)
@_handle_errors
def score(
    scorer_name: str,
    params: tuple[str, ...],
    out: str,
    text_field: str,
    domain_field: str | None,
    fmt: str,
    batch_rows: int,
    inputs: tuple[str, ...],
) -> None:
    """Score INPUTS with one scorer into a Parquet file (id, score, extras, source, source_row)."""
    from assay.config import DomainConfig, InputConfig
    from assay.pipeline.score import score_file

    cfg = InputConfig(
        paths=list(inputs),
        format=fmt,  # type: ignore[arg-type]  # checked by click.Choice
        text_field=text_field,
        domain=DomainConfig(field=domain_field),
    )
    res = score_file(cfg, scorer_name, params_from_cli(params), Path(out), batch_rows)
    click.echo(f"scored {res['docs']} documents with {scorer_name}: {out}")


@main.command()
@click.option("--model", required=True, help="An assay model directory, or hf:<local dir>.")
@click.option("--run", "run_dir", required=True, type=click.Path(file_okay=False), help="Run directory.")
@click.option("--name", default="loss", show_default=True, help="Score name: RUN/scores/<name>/.")
@click.option("--stride", type=int, help="Window stride in tokens for long documents (default: context).")
@exec_options
@_handle_errors
def loss(
    model: str,
    run_dir: str,
    name: str,
    stride: int | None,
    executor: str | None,
    workers: int | None,
    address: str | None,
) -> None:
    """Per-document loss (nll, tokens, chars, bits per char) of every document of a run."""
    from assay.pipeline.score import score_run_with

    params = {"model": model, **({"stride": stride} if stride else {})}
    out = score_run_with(Path(run_dir), name, "loss", params, executor or "ray", workers, address)
    click.echo(f"per-document loss written: {out}")


@main.command("train")
@click.option("--manifest", "manifest_path", required=True, type=click.Path(dir_okay=False))
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Model and checkpoint folder.")
@click.option(
    "--config", "config_path", type=click.Path(dir_okay=False), help="YAML: model / train sections."
)
@click.option("--tokens", type=int, help="Training budget in model tokens (default: the stream, one epoch).")
@_handle_errors
def train_cmd(manifest_path: str, out: str, config_path: str | None, tokens: int | None) -> None:
    """Train the built-in proxy model on a manifest's stream (resumes from OUT's checkpoints)."""
    from assay.pipeline.evaluate import train_on_manifest

    info = train_on_manifest(Path(manifest_path), Path(out), config_path, tokens)
    click.echo(
        f"trained {info['steps']} steps ({info['tokens']:,} tokens), "
        f"last loss {info['train_loss_last']:.4f}; model: {Path(out) / 'model'}"
    )


@main.command("eval")
@click.option("--manifest", "manifests", multiple=True, required=True, type=click.Path(dir_okay=False))
@click.option("--target", required=True, help="domain:NAME (the run's held-out target docs) or file:PATH.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Folder for eval.json/.md/.png.")
@click.option(
    "--config", "config_path", type=click.Path(dir_okay=False), help="YAML: model, train, baselines..."
)
@click.option("--tokens", type=int, help="Training budget per stream in model tokens.")
@click.option(
    "--baselines", default="random,natural", show_default=True, help="Comma-separated; '' for none."
)
@_handle_errors
def eval_cmd(
    manifests: tuple[str, ...],
    target: str,
    out: str,
    config_path: str | None,
    tokens: int | None,
    baselines: str,
) -> None:
    """Train a fresh proxy on each manifest's stream and on baselines; report held-out target loss."""
    from dataclasses import replace as dc_replace

    from assay.pipeline.evaluate import evaluate, load_eval_config

    cfg = load_eval_config(config_path)
    cfg = dc_replace(cfg, baselines=[b for b in baselines.split(",") if b])
    if tokens:
        cfg = dc_replace(cfg, train=dc_replace(cfg.train, tokens=tokens))
    evaluate([Path(m) for m in manifests], target, cfg, Path(out))
    click.echo((Path(out) / "eval.md").read_text())
    click.echo(f"plot: {Path(out) / 'eval.png'}")


@main.group()
def manifest() -> None:
    """Validate or summarise a manifest."""


@manifest.command("validate")
@click.argument("path", type=click.Path(dir_okay=False))
@_handle_errors
def manifest_validate(path: str) -> None:
    """Check the schema, every referenced file and its hash, and that the counts add up."""
    from assay.pipeline.manifest import validate

    problems = validate(Path(path))
    if problems:
        for p in problems:
            click.echo(f"invalid: {p}", err=True)
        sys.exit(1)
    click.echo(f"valid: {path}")


@manifest.command("show")
@click.argument("path", type=click.Path(dir_okay=False))
@_handle_errors
def manifest_show(path: str) -> None:
    """A readable summary: inputs, selection, domains, schedule."""
    from assay.pipeline.manifest import show

    click.echo(show(Path(path)))


@main.command("export")
@click.argument("manifest_path", type=click.Path(dir_okay=False))
@click.option("--format", "fmt", required=True, type=click.Choice(["parquet", "hf", "megatron"]))
@click.option("--out", type=click.Path(file_okay=False), help="Default: <run>/export/<format>.")
@click.option(
    "--tokenizer", default="bytes", show_default=True, help="megatron: bytes or file:<tokenizer.json>."
)
@click.option("--seq-length", default=2048, show_default=True, help="megatron: for phase start iterations.")
@click.option(
    "--global-batch-size", default=256, show_default=True, help="megatron: for phase start iterations."
)
@_handle_errors
def export_cmd(
    manifest_path: str, fmt: str, out: str | None, tokenizer: str, seq_length: int, global_batch_size: int
) -> None:
    """Export the manifest's training stream for a trainer."""
    from assay.pipeline.export import export

    m = Path(manifest_path)
    dest = Path(out) if out else m.parent / "export" / fmt
    kw = {"tokenizer": tokenizer, "seq_length": seq_length, "global_batch_size": global_batch_size}
    info = export(m, fmt, dest, **(kw if fmt == "megatron" else {}))
    click.echo(f"exported {fmt} to {dest}")
    if fmt == "megatron":
        for b in info["phases"]:
            click.echo(
                f"phase {b['phase']} from iteration {b['start_iteration']}: --data-path {b['data_path']}"
            )


@main.group()
def skillit() -> None:
    """Online Skill-It: a trainer reports per-skill losses each round and gets the next mixture."""


@skillit.command("init")
@click.option("--state", "state_dir", required=True, type=click.Path(file_okay=False))
@click.option("--skills", required=True, help="Comma-separated skill names.")
@click.option("--graph", "graph_path", required=True, type=click.Path(dir_okay=False), help=".npy/.json/.csv")
@click.option("--eta", default=0.5, show_default=True)
@click.option("--window", default=3, show_default=True)
@click.option("--target", default="", help="Comma-separated target skills (default: all).")
@_handle_errors
def skillit_init(state_dir: str, skills: str, graph_path: str, eta: float, window: int, target: str) -> None:
    """Create the state and print the first mixture (JSON)."""
    import json

    from assay.selectors.skillit import SkillItState, load_graph, reference_graph

    names = [x for x in skills.split(",") if x]
    g = reference_graph(load_graph(graph_path, names))
    tgt = [x for x in target.split(",") if x] or None
    if tgt and set(tgt) - set(names):
        raise ConfigError(f"--target {sorted(set(tgt) - set(names))} not among --skills {names}")
    st = SkillItState(names, g.tolist(), eta, window, tgt)
    mix = st.current()
    st.save(Path(state_dir))
    click.echo(json.dumps(mix, sort_keys=True))


@skillit.command("step")
@click.option("--state", "state_dir", required=True, type=click.Path(file_okay=False))
@click.option(
    "--losses",
    "losses_path",
    required=True,
    type=click.Path(dir_okay=False),
    help='JSON {"skill": loss, ...} of the round just trained.',
)
@_handle_errors
def skillit_step(state_dir: str, losses_path: str) -> None:
    """Record a round's losses; print the next mixture (JSON). The state is saved atomically."""
    import json

    from assay.errors import InputError
    from assay.selectors.skillit import SkillItState

    st = SkillItState.load(Path(state_dir))
    try:
        losses = json.loads(Path(losses_path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise InputError(f"cannot read losses {losses_path}: {e}") from e
    if not isinstance(losses, dict):
        raise InputError(f"{losses_path}: expected a JSON object of skill -> loss")
    mix = st.step(losses)
    st.save(Path(state_dir))
    click.echo(json.dumps(mix, sort_keys=True))


@main.command()
def scorers() -> None:
    """List the registered scorers."""
    from assay.scorers.base import get_scorer_class, scorer_names

    for n in scorer_names():
        doc = (get_scorer_class(n).__doc__ or "").strip().splitlines()
        click.echo(f"{n:14s} {doc[0] if doc else ''}")


@main.command()
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.argument("sql")
@click.option("--max-rows", default=40, show_default=True)
@_handle_errors
def query(run_dir: str, sql: str, max_rows: int) -> None:
    """Run SQL on a run's catalog (views: docs, scores_<name>, selection, rejects)."""
    from assay.pipeline.catalog import query as run_query

    rel = run_query(Path(run_dir), sql)
    if rel is None:
        return
    rel.show(max_rows=max_rows)


@main.command()
@click.argument("run_dir", type=click.Path(file_okay=False))
@_handle_errors
def stats(run_dir: str) -> None:
    """Docs, tokens, duplicates, selection and score summaries per domain."""
    from assay.pipeline.run import run_stats

    rows = run_stats(Path(run_dir))
    cols: list[str] = []
    for r in rows:
        cols.extend(k for k in r if k not in cols)
    fmt = [[_fmt(r.get(c)) for c in cols] for r in rows]
    widths = [max(len(c), *(len(f[i]) for f in fmt)) for i, c in enumerate(cols)]
    click.echo("  ".join(c.ljust(w) for c, w in zip(cols, widths)))
    for f in fmt:
        click.echo("  ".join(v.ljust(w) for v, w in zip(f, widths)))


def _fmt(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


if __name__ == "__main__":
    main()
