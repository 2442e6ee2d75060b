from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from assay.config import DomainConfig, InputConfig
from assay.errors import InputError
from assay.pipeline.readers import Rejects, expand_inputs, read_batches
from conftest import PROSE, write_jsonl


def read_all(cfg: InputConfig) -> tuple[list[tuple[str, str, int]], Rejects]:
    rejects = Rejects()
    rows = []
    for src in expand_inputs(cfg):
        for b in read_batches(src, cfg, 2, rejects):
            rows.extend(zip(b.text.to_pylist(), b.domain.to_pylist(), b.source_row.tolist()))
    return rows, rejects


@pytest.mark.parametrize("compress", [None, "gz", "zst"])
def test_jsonl_variants(tmp_path: Path, compress: str | None) -> None:
    suffix = {None: "", "gz": ".gz", "zst": ".zst"}[compress]
    p = write_jsonl(tmp_path / f"d.jsonl{suffix}", [{"text": t, "src": "x"} for t in PROSE[:3]], compress)
    rows, _ = read_all(InputConfig(paths=[str(p)], domain=DomainConfig(field="src")))
    assert rows == [(PROSE[0], "x", 0), (PROSE[1], "x", 1), (PROSE[2], "x", 2)]


def test_parquet_and_domain_from_path(tmp_path: Path) -> None:
    (tmp_path / "news").mkdir()
    pq.write_table(pa.table({"content": PROSE[:3]}), tmp_path / "news" / "part-0.parquet")
    cfg = InputConfig(
        paths=[str(tmp_path / "*" / "*.parquet")],
        text_field="content",
        domain=DomainConfig(path_pattern="{domain}/part-*.parquet"),
    )
    rows, _ = read_all(cfg)
    assert [(d, r) for _, d, r in rows] == [("news", 0), ("news", 1), ("news", 2)]


def test_hf_save_to_disk_and_load_dataset(tmp_path: Path) -> None:
    import datasets

    datasets.Dataset.from_dict({"text": PROSE[:3], "lang": ["en"] * 3}).save_to_disk(str(tmp_path / "ds"))
    rows, _ = read_all(InputConfig(paths=[str(tmp_path / "ds")], domain=DomainConfig(field="lang")))
    assert [t for t, _, _ in rows] == PROSE[:3] and {d for _, d, _ in rows} == {"en"}
    p = write_jsonl(tmp_path / "x.jsonl", [{"text": t} for t in PROSE[:2]])
    rows, _ = read_all(InputConfig(paths=[str(p)], format="hf_load", builder="json"))
    assert [t for t, _, _ in rows] == PROSE[:2]


def test_blank_lines_skipped_rows_are_line_indices(tmp_path: Path) -> None:
    p = write_jsonl(tmp_path / "d.jsonl", ['{"text": "a"}', "", '{"text": "b"}'])
    rows, _ = read_all(InputConfig(paths=[str(p)]))
    assert rows == [("a", "default", 0), ("b", "default", 2)]


BAD_LINES = [
    ('{"txt": "x"}', r"line 2: missing field 'text'"),
    ('{"text": 5}', r"line 2: field 'text' is int, expected a string"),
    ('{"text": "x"', r"line 2: malformed JSON"),
    ('["text"]', r"line 2: expected a JSON object, got list"),
]


@pytest.mark.parametrize(("line", "msg"), BAD_LINES)
def test_bad_rows_fail_naming_file_and_line(tmp_path: Path, line: str, msg: str) -> None:
    p = write_jsonl(tmp_path / "d.jsonl", ['{"text": "ok"}', line])
    with pytest.raises(InputError, match=rf"d\.jsonl, {msg}"):
        read_all(InputConfig(paths=[str(p)]))


def test_invalid_utf8(tmp_path: Path) -> None:
    p = tmp_path / "d.jsonl"
    p.write_bytes(b'{"text": "ok"}\n{"text": "bad \xff\xfe"}\n')
    with pytest.raises(InputError, match=r"d\.jsonl, line 2: invalid UTF-8 at byte 14"):
        read_all(InputConfig(paths=[str(p)]))


def test_skip_policy_collects_rejects(tmp_path: Path) -> None:
    p = tmp_path / "d.jsonl"
    p.write_bytes(b'{"text": "ok"}\n{"text": 1}\n{bad json\n{"text": "\xff"}\n{"text": "fine"}\n')
    rows, rejects = read_all(InputConfig(paths=[str(p)], on_error="skip"))
    assert [t for t, _, _ in rows] == ["ok", "fine"]
    assert [(r["row"], r["reason"].split(":")[0]) for r in rejects.rows] == [
        (1, "field 'text' is int, expected a string"),
        (2, "malformed JSON"),
        (3, "invalid UTF-8 at byte 10"),
    ]


def test_parquet_null_and_wrong_type(tmp_path: Path) -> None:
    pq.write_table(pa.table({"text": ["a", None, "c"]}), tmp_path / "n.parquet")
    with pytest.raises(InputError, match=r"n\.parquet, row 1: field 'text' is null"):
        read_all(InputConfig(paths=[str(tmp_path / "n.parquet")]))
    rows, rej = read_all(InputConfig(paths=[str(tmp_path / "n.parquet")], on_error="skip"))
    assert [t for t, _, _ in rows] == ["a", "c"] and rej.rows[0]["row"] == 1
    pq.write_table(pa.table({"text": [1, 2]}), tmp_path / "i.parquet")
    with pytest.raises(InputError, match=r"i\.parquet: column 'text' has type int64, expected a string"):
        read_all(InputConfig(paths=[str(tmp_path / "i.parquet")]))
    with pytest.raises(InputError, match=r"i\.parquet: no column 'body'"):
        read_all(InputConfig(paths=[str(tmp_path / "i.parquet")], text_field="body"))


def test_parquet_invalid_utf8(tmp_path: Path) -> None:
    arr = pa.array([b"good", b"\xff\xfe"], pa.binary()).cast(pa.string(), safe=False)
    pq.write_table(pa.table({"text": arr}), tmp_path / "u.parquet")
    with pytest.raises(InputError, match=r"u\.parquet, row 1: field 'text' is not valid UTF-8"):
        read_all(InputConfig(paths=[str(tmp_path / "u.parquet")]))


def test_empty_file(tmp_path: Path) -> None:
    (tmp_path / "e.jsonl").write_text("\n\n")
    with pytest.raises(InputError, match=r"e\.jsonl: file is empty"):
        read_all(InputConfig(paths=[str(tmp_path / "e.jsonl")]))
    _, rej = read_all(InputConfig(paths=[str(tmp_path / "e.jsonl")], on_error="skip"))
    assert rej.rows == [
        {
            "source": str(tmp_path / "e.jsonl"),
            "row": None,
            "reason": "file is empty (no records)",
            "domain": None,
        }
    ]


def test_missing_and_unreadable_paths(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"input .*nope\.jsonl does not exist"):
        expand_inputs(InputConfig(paths=[str(tmp_path / "nope.jsonl")]))
    with pytest.raises(InputError, match=r"input pattern .*\*\.parquet' matches no file"):
        expand_inputs(InputConfig(paths=[str(tmp_path / "*.parquet")]))
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(InputError, match=r"x\.txt: cannot tell the format"):
        expand_inputs(InputConfig(paths=[str(tmp_path / "x.txt")]))
    (tmp_path / "corrupt.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(InputError, match=r"cannot read .*corrupt\.parquet as Parquet"):
        read_all(InputConfig(paths=[str(tmp_path / "corrupt.parquet")]))
    (tmp_path / "trunc.jsonl.gz").write_bytes(b"\x1f\x8b\x08\x00garbage")
    with pytest.raises(InputError, match=r"trunc\.jsonl\.gz: cannot (decompress|read)"):
        read_all(InputConfig(paths=[str(tmp_path / "trunc.jsonl.gz")]))


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_permission_denied(tmp_path: Path) -> None:
    p = write_jsonl(tmp_path / "d.jsonl", [{"text": "a"}])
    p.chmod(0)
    with pytest.raises(InputError, match=r"cannot read .*d\.jsonl: permission denied"):
        read_all(InputConfig(paths=[str(p)]))


def test_path_pattern_mismatch(tmp_path: Path) -> None:
    p = write_jsonl(tmp_path / "flat.jsonl", [{"text": "a"}])
    with pytest.raises(InputError, match=r"flat\.jsonl does not match domain\.path_pattern"):
        expand_inputs(InputConfig(paths=[str(p)], domain=DomainConfig(path_pattern="{domain}/part-*.jsonl")))
