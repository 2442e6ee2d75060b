"""The training manifest: build, validate (JSON Schema, file hashes, counts) and summarise.

The schema is ``assay/schema/manifest.schema.json`` (shipped with the package). ``created`` is
SOURCE_DATE_EPOCH when set (the reproducible-builds convention), else the time the run directory
was first used, so a rerun or a resumed run rewrites the same bytes.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path
from typing import Any

from assay.errors import AssayError, InputError
from assay.pipeline.fsutil import read_json, write_bytes
from assay.pipeline.shard import file_digest

SCHEMA_PATH = Path(__file__).resolve().parents[1] / "assay" / "schema" / "manifest.schema.json"


def schema() -> dict[str, Any]:
    from importlib import resources

    try:
        return json.loads(resources.files("assay").joinpath("schema/manifest.schema.json").read_text())
    except (FileNotFoundError, ModuleNotFoundError):  # a source tree without an install
        return json.loads(SCHEMA_PATH.read_text())


def created_time(run_dir: Path) -> str:
    """SOURCE_DATE_EPOCH if set, else the first-use time of the run directory (kept in _state)."""
    sde = os.environ.get("SOURCE_DATE_EPOCH")
    if sde is not None:
        try:
            return dt.datetime.fromtimestamp(int(sde), dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        except ValueError as e:
            raise AssayError(f"SOURCE_DATE_EPOCH={sde!r} is not an integer number of seconds") from e
    stamp = run_dir / "_state" / "created"
    if not stamp.exists():
        now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        write_bytes(stamp, now.encode())
    return stamp.read_text().strip()


def file_entries(run_dir: Path, rel_paths: list[str]) -> dict[str, dict[str, Any]]:
    return {
        p: {"bytes": (run_dir / p).stat().st_size, "xxh3_128": file_digest(str(run_dir / p))}
        for p in sorted(set(rel_paths))
    }


def validate(path: Path) -> list[str]:
    """Problems with a manifest (empty when valid): schema, referenced files and hashes, counts."""
    import jsonschema

    try:
        m = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise InputError(f"cannot read manifest {path}: {e}") from e
    errors = [
        f"schema: {'/'.join(str(x) for x in e.absolute_path) or '<root>'}: {e.message}"
        for e in sorted(jsonschema.Draft202012Validator(schema()).iter_errors(m), key=lambda e: list(e.path))
    ]
    if errors:
        return errors
    root = path.parent
    bad: set[str] = set()
    for rel, info in sorted(m["files"].items()):
        f = root / rel
        if not f.is_file():
            errors.append(f"missing file: {rel}")
            bad.add(rel)
        elif f.stat().st_size != info["bytes"] or file_digest(str(f)) != info["xxh3_128"]:
            errors.append(f"file changed: {rel} (size or XXH3-128 differs from the manifest)")
            bad.add(rel)
    referenced = [d["selection_file"] for d in m["domains"].values()] + [
        s for d in m["domains"].values() for s in d["shards"]
    ]
    errors += [f"file not listed in files: {r}" for r in sorted(set(referenced) - set(m["files"]))]
    errors += _count_errors(m, root, skip=bad | (set(referenced) - set(m["files"])))
    return errors


def _count_errors(m: dict[str, Any], root: Path, skip: set[str]) -> list[str]:
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    errs = []
    sched = m["schedule"]
    if sum(p["tokens"] for p in sched["phases"]) != sched["total_tokens"]:
        errs.append(
            f"schedule: phase tokens add up to {sum(p['tokens'] for p in sched['phases'])}, "
            f"total_tokens is {sched['total_tokens']}"
        )
    for p in sched["phases"]:
        if sum(p["domain_tokens"].values()) != p["tokens"]:
            errs.append(
                f"schedule phase {p['index']}: domain tokens add up to {sum(p['domain_tokens'].values())}, "
                f"the phase has {p['tokens']}"
            )
        if p["end_tokens"] - p["start_tokens"] != p["tokens"]:
            errs.append(f"schedule phase {p['index']}: end_tokens - start_tokens != tokens")
        if abs(sum(p["weights"].values()) - 1) > 1e-9:
            errs.append(f"schedule phase {p['index']}: weights sum to {sum(p['weights'].values())}, not 1")
    sel_docs = sel_tok = 0
    for name, d in sorted(m["domains"].items()):
        sel_docs += d["selected_docs"]
        sel_tok += d["selected_tokens"]
        if d["selection_file"] in skip:
            continue
        t = pq.read_table(root / d["selection_file"], columns=["n_tokens", "selected"])
        chosen = t.filter(t.column("selected"))
        got = (
            t.num_rows,
            int(pc.sum(t.column("n_tokens")).as_py() or 0),
            chosen.num_rows,
            int(pc.sum(chosen.column("n_tokens")).as_py() or 0),
        )
        want = (d["docs"], d["tokens"], d["selected_docs"], d["selected_tokens"])
        for label, g, w in zip(("docs", "tokens", "selected_docs", "selected_tokens"), got, want):
            if g != w:
                errs.append(f"domain {name}: {label} is {w} in the manifest, {g} in {d['selection_file']}")
    if (sel_docs, sel_tok) != (m["selection"]["selected_docs"], m["selection"]["selected_tokens"]):
        errs.append("selection: selected_docs/selected_tokens differ from the sum over domains")
    return errs


def show(path: Path) -> str:
    """A readable summary of a manifest."""
    m = read_json(path)
    sel = m["selection"]
    lines = [
        f"manifest {path} (format {m['format']} v{m['manifest_version']}, run {m['run_id']}, "
        f"created {m['created']}, assay {m['tool']['version']}, seed {m['seed']})",
        f"inputs: {len(m['inputs'])} files, {sum(i['docs_read'] for i in m['inputs']):,} docs read, "
        f"{m['rejects']['rows']} rejected rows",
        "scorers: " + (", ".join(f"{k} v{v['version']}" for k, v in m["scorers"].items()) or "none"),
        f"selection: {sel['method']} by {sel['by']}: "
        f"{sel['selected_docs']:,} docs, {sel['selected_tokens']:,} tokens ({m['token_unit']})",
        "",
        f"{'domain':24s} {'docs':>9s} {'tokens':>12s} {'selected':>9s} {'sel.tokens':>12s} {'epochs':>7s}",
    ]
    for name, d in sorted(m["domains"].items()):
        lines.append(
            f"{name:24s} {d['docs']:9,d} {d['tokens']:12,d} {d['selected_docs']:9,d} "
            f"{d['selected_tokens']:12,d} {d['epochs']:7.2f}"
        )
    s = m["schedule"]
    lines += [
        "",
        f"schedule ({s.get('solver', {}).get('name', '?')}): {s['total_tokens']:,} tokens in "
        f"{len(s['phases'])} phases; weights are {s['weights_unit']}",
    ]
    doms = sorted(s["phases"][0]["weights"])
    lines.append(
        f"{'phase':>5s} {'start':>6s} {'end':>6s} {'tokens':>12s}  "
        + " ".join(f"{d[:10]:>10s}" for d in doms)
    )
    for p in s["phases"]:
        lines.append(
            f"{p['index']:5d} {p['start']:6.3f} {p['end']:6.3f} {p['tokens']:12,d}  "
            + " ".join(f"{p['weights'][d]:10.4f}" for d in doms)
        )
    return "\n".join(lines)
