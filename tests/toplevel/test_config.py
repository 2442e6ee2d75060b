from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from assay.config import load_config
from assay.errors import ConfigError

BASE = {"input": {"paths": ["x.jsonl"]}}


def write(tmp_path: Path, data: object) -> Path:
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump(data))
    return p


def test_defaults_and_relative_paths(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, BASE))
    assert cfg.input.paths == [str(tmp_path / "x.jsonl")]
    assert cfg.select.method == "topk" and cfg.shard.tokenizer == "bytes4"
    assert cfg.digest() == load_config(write(tmp_path, BASE)).digest()


def test_unknown_top_level_key_names_key_and_file(tmp_path: Path) -> None:
    p = write(tmp_path, {**BASE, "seeed": 1})
    with pytest.raises(ConfigError, match=r"unknown key 'seeed' in .*c\.yaml \(did you mean 'seed'\?\)"):
        load_config(p)


def test_unknown_nested_key(tmp_path: Path) -> None:
    p = write(tmp_path, {"input": {"paths": ["x"], "txt_field": "t"}})
    with pytest.raises(ConfigError, match=r"unknown key 'input\.txt_field' in .*c\.yaml.*'text_field'"):
        load_config(p)


def test_unknown_scorer_param(tmp_path: Path) -> None:
    p = write(tmp_path, {**BASE, "scorers": [{"name": "compression", "levle": 3, "target": {"domain": "a"}}]})
    with pytest.raises(
        ConfigError, match=r"unknown key 'levle' in scorers\[0\] \(compression\) in .*c\.yaml"
    ):
        load_config(p)


def test_unknown_scorer_lists_valid(tmp_path: Path) -> None:
    p = write(tmp_path, {**BASE, "scorers": [{"name": "zipfit"}]})
    with pytest.raises(ConfigError, match=r"unknown scorer 'zipfit'.*valid: .*compression.*dsir"):
        load_config(p)


def test_unknown_solver(tmp_path: Path) -> None:
    p = write(tmp_path, {**BASE, "mixture": {"solver": "natrual"}})
    with pytest.raises(ConfigError, match=r"unknown mixture solver 'natrual'.*did you mean 'natural'"):
        load_config(p)


@pytest.mark.parametrize(
    ("data", "msg"),
    [
        ({"input": {"paths": "x"}}, r"input\.paths in .*: expected a list"),
        ({**BASE, "seed": "abc"}, r"seed in .*: expected an integer, got 'abc'"),
        ({**BASE, "select": {"method": "best", "by": "x"}}, r"select\.method.*expected one of 'topk'"),
        ({**BASE, "select": {"by": "nope"}}, r"select\.by 'nope' is not one of the configured scorers"),
        ({**BASE, "select": {"budget": {"tokens": -1}}}, r"budget\.tokens must be > 0"),
        ({**BASE, "select": {"budget": {"tokens": 5, "fraction": 0.1}}}, r"give exactly one of fraction"),
        ({**BASE, "select": {"budget": {"fraction": 1.5}}}, r"budget\.fraction must be in \(0, 1\]"),
        ({"shard": {}}, r"input in .*: required key is missing"),
        (
            {**BASE, "input": {"paths": ["x"], "domain": {"path_pattern": "*.jsonl"}}},
            r"must contain '\{domain\}'",
        ),
    ],
)
def test_bad_values(tmp_path: Path, data: object, msg: str) -> None:
    with pytest.raises(ConfigError, match=msg):
        load_config(write(tmp_path, data))


def test_invalid_yaml_and_missing_file(tmp_path: Path) -> None:
    p = tmp_path / "bad.yaml"
    p.write_text("input: [unclosed\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: invalid YAML"):
        load_config(p)
    with pytest.raises(ConfigError, match=r"cannot read config .*missing\.yaml"):
        load_config(tmp_path / "missing.yaml")


def test_demo_config_loads() -> None:
    cfg = load_config(Path(__file__).resolve().parents[2] / "configs" / "demo.yaml")
    assert [s.name for s in cfg.scorers] == ["compression", "dsir", "length"]
