from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from assay.errors import ConfigError
from assay.scorers.fasttext_quality import (
    FastTextParams,
    FastTextScorer,
    normalize,
    train_classifier,
    write_training_file,
)
from conftest import CODE, PROSE


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("ft")
    write_training_file(d / "train.txt", [("hq", t) for t in PROSE * 5] + [("lq", t) for t in CODE * 5])
    train_classifier(d / "train.txt", d / "quality.bin", epoch=25, lr=0.5)
    return d / "quality.bin"


def test_training_file_has_one_line_per_example(tmp_path: Path) -> None:
    write_training_file(tmp_path / "t.txt", [("a", "x\ny\r\nz"), ("b", "w")])
    assert (tmp_path / "t.txt").read_text() == "__label__a x y  z\n__label__b w\n"


def test_scores_equal_fasttext_batch_predict(model: Path) -> None:
    import fasttext

    texts = PROSE + CODE + [""]
    s = FastTextScorer(FastTextParams(model=str(model), label="hq"))
    out, _ = s.score_table(pa.table({"id": [str(i) for i in range(len(texts))], "text": texts}), batch_rows=4)
    ft = fasttext.load_model(str(model))
    labels, probs = ft.predict([normalize(t) for t in texts], k=2, threshold=0.0)
    expect = [min(float(p[list(lab).index("__label__hq")]), 1.0) for lab, p in zip(labels, probs)]
    assert out.column("score").to_pylist() == expect
    sc = np.array(out.column("score").to_pylist())
    assert sc[: len(PROSE)].mean() > 0.5 > sc[len(PROSE) : len(PROSE) + len(CODE)].mean()


def test_missing_model_and_label(tmp_path: Path, model: Path) -> None:
    with pytest.raises(ConfigError, match=r"model file .*nope\.bin does not exist"):
        FastTextScorer(FastTextParams(model=str(tmp_path / "nope.bin")))
    s = FastTextScorer(FastTextParams(model=str(model), label="__label__good"))
    with pytest.raises(
        ConfigError, match=r"has no label '__label__good'; labels: \['__label__\w+', '__label__\w+'\]"
    ):
        s.setup()
    (tmp_path / "junk.bin").write_bytes(b"not a model")
    with pytest.raises(ConfigError, match=r"cannot load model .*junk\.bin"):
        FastTextScorer(FastTextParams(model=str(tmp_path / "junk.bin"))).setup()
    with pytest.raises(ConfigError, match="model is required"):
        FastTextParams().validate()
