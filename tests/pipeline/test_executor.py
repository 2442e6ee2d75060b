from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from assay.errors import InputError, RetryableError
from assay.pipeline.executor import Task


@pytest.fixture(autouse=True, scope="module")
def _pickle_this_module_by_value() -> None:
    """Ray workers cannot import test modules: ship these step classes by value."""
    import sys

    import ray.cloudpickle

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])


@dataclass
class Flaky:
    """Fails with RetryableError the first ``fails`` times per task (counted in files), then works."""

    root: str
    fails: int

    def __call__(self, task: Task, rank: int, world_size: int) -> dict[str, Any]:
        counter = Path(self.root) / f"{task.key}.tries"
        n = int(counter.read_text()) if counter.exists() else 0
        counter.write_text(str(n + 1))
        if n < self.fails:
            raise RetryableError(f"transient failure {n} of {task.key}")
        return {"docs": 1, "rank": rank, "world": world_size, "payload": task.payload}


@dataclass
class Broken:
    def __call__(self, task: Task, rank: int, world_size: int) -> dict[str, Any]:
        if task.payload == "bad":
            raise InputError(f"data.jsonl, line 7: broken row in {task.key}")
        return {"docs": 1}


def test_local_runs_in_order_and_skips_done(tmp_path: Path, local_executor: Any) -> None:
    tasks = [Task(f"t{i}", i) for i in range(3)]
    res = local_executor.run("s", Flaky(str(tmp_path), 0), tasks, tmp_path / "state")
    assert [(r["rank"], r["world"], r["payload"]) for r in res] == [(0, 3, 0), (1, 3, 1), (2, 3, 2)]
    assert sorted(p.name for p in (tmp_path / "state" / "s").iterdir()) == ["t0.done", "t1.done", "t2.done"]
    (tmp_path / "state" / "s" / "t1.done").unlink()
    res2 = local_executor.run("s", Flaky(str(tmp_path), 0), tasks, tmp_path / "state")
    assert res2 == res
    assert [(tmp_path / f"t{i}.tries").read_text() for i in range(3)] == ["1", "2", "1"]


def test_ray_retries_retryable_errors(tmp_path: Path, ray_executor: Any) -> None:
    tasks = [Task(f"t{i}", i) for i in range(4)]
    res = ray_executor.run("flaky", Flaky(str(tmp_path), 2), tasks, tmp_path / "state")
    assert [r["payload"] for r in res] == [0, 1, 2, 3]
    assert all((tmp_path / f"t{i}.tries").read_text() == "3" for i in range(4))


def test_ray_surfaces_the_original_error(tmp_path: Path, ray_executor: Any) -> None:
    tasks = [Task("ok", "fine"), Task("bad", "bad")]
    with pytest.raises(InputError, match=r"data\.jsonl, line 7: broken row in bad"):
        ray_executor.run("broken", Broken(), tasks, tmp_path / "state")
    assert not (tmp_path / "state" / "broken" / "bad.done").exists()


def test_ray_gives_up_after_retries(tmp_path: Path, ray_executor: Any) -> None:
    with pytest.raises(RetryableError, match="transient failure 2 of t0"):
        ray_executor.run("flaky2", Flaky(str(tmp_path), 10), [Task("t0", 0)], tmp_path / "state")
