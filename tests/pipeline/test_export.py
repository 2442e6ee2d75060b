from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

import assay
from assay.cli import main
from assay.config import parse_config
from assay.pipeline.export import (
    export_megatron,
    export_parquet,
    read_indexed_dataset,
    sampling_probabilities,
)
from assay.pipeline.manifest import validate
from assay.pipeline.run import run_select
from conftest import CODE, PROSE, tree_bytes, write_jsonl


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two phases (upsampling at the end) over three domains of very different sizes."""
    from assay.pipeline.executor import LocalExecutor

    root = tmp_path_factory.mktemp("export")
    rng = np.random.default_rng(0)
    words = " ".join(PROSE).split()
    big = [" ".join(rng.choice(words, 40)) + f" {i}" for i in range(300)]
    write_jsonl(root / "c" / "big.jsonl", [{"text": t} for t in big])
    write_jsonl(root / "c" / "code.jsonl", [{"text": t + f"# {i}\n"} for i in range(20) for t in CODE[:3]])
    write_jsonl(root / "c" / "prose.jsonl", [{"text": t + f" ({i})"} for i in range(10) for t in PROSE])
    cfg = parse_config(
        {
            "input": {"paths": [str(root / "c" / "*.jsonl")], "domain": {"path_pattern": "{domain}.jsonl"}},
            "select": {"method": "all"},
            "mixture": {"solver": "upsample", "domains": {"code": 4.0}, "fraction": 0.25},
            "manifest": {"max_epochs": 10},
            "seed": 5,
        },
        source="test",
    )
    run_select(cfg, root / "run", LocalExecutor())
    return root / "run"


def fractions(rows: list[dict[str, Any]]) -> dict[int, dict[str, float]]:
    tok: dict[int, Counter[str]] = {}
    for r in rows:
        tok.setdefault(r["phase"], Counter())[r["domain"]] += r["n_tokens"]
    return {k: {d: n / sum(c.values()) for d, n in c.items()} for k, c in tok.items()}


def test_manifest_validates_and_catches_tampering(run: Path, tmp_path: Path) -> None:
    assert validate(run / "manifest.json") == []
    res = CliRunner().invoke(main, ["manifest", "show", str(run / "manifest.json")])
    assert res.exit_code == 0 and "schedule (upsample)" in res.output and "big" in res.output
    bad = tmp_path / "run"
    shutil.copytree(run, bad)
    sel = json.loads((bad / "manifest.json").read_text())["domains"]["code"]["selection_file"]
    (bad / sel).write_bytes((bad / sel).read_bytes()[:-8] + b"tampered")
    (bad / "shards" / "00000.parquet").unlink()
    m = json.loads((bad / "manifest.json").read_text())
    m["domains"]["prose"]["selected_tokens"] += 1
    (bad / "manifest.json").write_text(json.dumps(m))
    res = CliRunner().invoke(main, ["manifest", "validate", str(bad / "manifest.json")])
    assert res.exit_code == 1
    assert f"file changed: {sel}" in res.output
    assert "missing file: shards/00000.parquet" in res.output
    assert (
        "domain prose: selected_tokens is" in res.output
        and "selection: selected_docs/selected_tokens" in res.output
    )
    m["schedule"]["phases"][0]["weights"]["big"] = 2.0
    (bad / "manifest.json").write_text(json.dumps(m))
    assert any(e.startswith("schema: schedule/phases/0/weights/big") for e in validate(bad / "manifest.json"))


def test_parquet_export_follows_the_schedule(run: Path, tmp_path: Path) -> None:
    index = export_parquet(run / "manifest.json", tmp_path / "pq")
    rows = [r for f in index["files"] for r in pq.read_table(tmp_path / "pq" / f["file"]).to_pylist()]
    assert len(rows) == index["rows"] and [p["phase"] for p in index["phases"]] == [0, 1]
    assert (
        rows[index["phases"][1]["first_row"]]["phase"] == 1
        and rows[index["phases"][0]["end_row"] - 1]["phase"] == 0
    )
    sched = json.loads((run / "manifest.json").read_text())["schedule"]["phases"]
    for k, fr in fractions(rows).items():  # tolerance: at most one document per domain of overshoot
        for d, w in sched[k]["weights"].items():
            assert abs(fr.get(d, 0) - w) < 0.03, (k, d, fr, w)
    export_parquet(run / "manifest.json", tmp_path / "pq2")
    assert tree_bytes(tmp_path / "pq") == tree_bytes(tmp_path / "pq2")
    small = export_parquet(run / "manifest.json", tmp_path / "pq3", rows_per_file=7)
    assert [f["rows"] for f in small["files"][:-1]] == [7] * (len(small["files"]) - 1)
    rows3 = [r for f in small["files"] for r in pq.read_table(tmp_path / "pq3" / f["file"]).to_pylist()]
    assert rows3 == rows


def test_hf_load_manifest_exact_and_sampled(run: Path) -> None:
    sched = json.loads((run / "manifest.json").read_text())["schedule"]["phases"]
    rows = list(assay.load_manifest(run / "manifest.json"))
    for k, fr in fractions(rows).items():
        for d, w in sched[k]["weights"].items():
            assert abs(fr.get(d, 0) - w) < 0.03
    one = list(assay.load_manifest(run / "manifest.json", phase=1))
    assert one == [r for r in rows if r["phase"] == 1]
    sampled = list(assay.load_manifest(run / "manifest.json", mode="sample"))
    for k, fr in fractions(sampled).items():  # sampling: looser, statistical tolerance
        for d, w in sched[k]["weights"].items():
            assert abs(fr.get(d, 0) - w) < 0.08, (k, d, fr, w)
    probs = sampling_probabilities({"weights": {"a": 0.5, "b": 0.5}}, {"a": 100.0, "b": 10.0})
    assert probs == pytest.approx({"a": 1 / 11, "b": 10 / 11})


def test_proxy_trains_from_the_hf_and_parquet_exports(run: Path, tmp_path: Path) -> None:
    from assay.pipeline.models import BuiltinGPT, GPTConfig
    from assay.pipeline.train import TrainConfig, train

    texts = [r["text"] for r in assay.load_manifest(run / "manifest.json")]
    m = BuiltinGPT(GPTConfig(context=16, n_layer=1, n_head=2, n_embd=16))
    info = train(m, texts, TrainConfig(tokens=16 * 4 * 5, batch_size=4))
    assert info["steps"] == 5 and np.isfinite(info["train_loss_last"])
    index = export_parquet(run / "manifest.json", tmp_path / "pq")
    texts2 = [
        t for f in index["files"] for t in pq.read_table(tmp_path / "pq" / f["file"])["text"].to_pylist()
    ]
    assert texts2 == texts


def test_megatron_export_reads_back(run: Path, tmp_path: Path) -> None:
    info = export_megatron(run / "manifest.json", tmp_path / "mg", seq_length=64, global_batch_size=4)
    m = json.loads((run / "manifest.json").read_text())
    for d, prefix in info["prefixes"].items():
        arrays = read_indexed_dataset(tmp_path / "mg" / prefix)
        sel = pq.read_table(run / m["domains"][d]["selection_file"])
        ids = sel.filter(sel["selected"])["id"].to_pylist()
        assert len(arrays) == len(ids)
        decoded = {bytes(a[:-1].astype(np.uint8)).decode() for a in arrays}
        assert all(a[-1] == 256 for a in arrays) and len(decoded) == len(ids)
        raw = (tmp_path / "mg" / f"{prefix}.idx").read_bytes()
        assert (
            raw[:9] == b"MMIDIDX\x00\x00" and raw[9:17] == (1).to_bytes(8, "little") and raw[17] == 8
        )  # uint16
    assert [p["start_iteration"] for p in info["phases"]] == [0, int(0.75 * info["train_iters"])]
    assert info["phases"][-1]["end_iteration"] == info["train_iters"]
    parts = info["phases"][1]["data_path"].split()
    weights = dict(zip(parts[1::2], map(float, parts[0::2])))
    assert weights[info["prefixes"]["code"]] == pytest.approx(
        m["schedule"]["phases"][1]["weights"]["code"], abs=1e-7
    )


def test_megatron_core_reader(run: Path, tmp_path: Path) -> None:
    idx = pytest.importorskip("megatron.core.datasets.indexed_dataset")
    info = export_megatron(run / "manifest.json", tmp_path / "mg", seq_length=64, global_batch_size=4)
    for prefix in info["prefixes"].values():
        ours = read_indexed_dataset(tmp_path / "mg" / prefix)
        ds = idx.IndexedDataset(str(tmp_path / "mg" / prefix))
        assert len(ds) == len(ours)
        for i in range(len(ours)):
            assert np.array_equal(ds[i], ours[i])
