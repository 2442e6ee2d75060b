"""Executors run a step over tasks, skipping tasks already done. The only module that imports Ray.

A step is a picklable callable ``step(task, rank, world_size) -> dict`` (JSON-able stats). It writes
its outputs atomically; the executor then writes ``<state_dir>/<stage>/<task.key>.done`` holding the
returned stats (also atomically), so a killed run re-runs exactly the unfinished tasks and reads the
finished tasks' stats from their markers. ``rank`` is the task's index, ``world_size`` the task count
(as in datatrove), independent of how many workers run them, so outputs never depend on parallelism.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from assay.errors import AssayError, RetryableError
from assay.pipeline.fsutil import read_json, write_json

log = logging.getLogger("assay")


@dataclass(frozen=True)
class Task:
    key: str  # unique within a stage; names the done marker
    payload: Any = None
    nbytes: int = 0  # input bytes, for MB/s in progress reports


class Step(Protocol):
    def __call__(self, task: Task, rank: int, world_size: int) -> dict[str, Any]: ...


def _marker(state_dir: Path, stage: str, key: str) -> Path:
    return state_dir / stage / f"{key.replace('/', '__')}.done"


def run_task(step: Step, task: Task, rank: int, world_size: int, marker: str) -> dict[str, Any]:
    """Run one task and write its done marker after its outputs (runs inside a worker)."""
    result = step(task, rank, world_size)
    write_json(marker, result)
    return result


class Progress:
    """A tqdm bar on a terminal (tasks, MB/s, docs/s, ETA); plain log lines otherwise."""

    def __init__(self, stage: str, total: int, total_bytes: int, done: int) -> None:
        self.stage, self.total, self.total_bytes = stage, total, total_bytes
        self.start = time.monotonic()
        self.bytes = 0
        self.docs = 0
        self.count = self.initial = done
        self.bar = None
        if sys.stderr.isatty() and not os.environ.get("ASSAY_NO_BAR"):
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=done, desc=stage, unit="task", dynamic_ncols=True)

    def update(self, result: dict[str, Any], nbytes: int) -> None:
        self.count += 1
        self.bytes += nbytes
        self.docs += int(result.get("docs", 0))
        dt = max(time.monotonic() - self.start, 1e-9)
        mbs, dps = self.bytes / dt / 1e6, self.docs / dt
        remaining = self.total - self.count
        if self.bar is not None:
            self.bar.set_postfix_str(f"{mbs:.1f} MB/s, {dps:,.0f} docs/s", refresh=False)
            self.bar.update(1)
        else:
            eta = dt / max(self.count - self.initial, 1) * remaining
            log.info(
                "%s: %d/%d tasks, %.1f MB/s, %.0f docs/s, ETA %.0fs",
                self.stage,
                self.count,
                self.total,
                mbs,
                dps,
                eta,
            )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class Executor(ABC):
    def run(self, stage: str, step: Step, tasks: Sequence[Task], state_dir: Path) -> list[dict[str, Any]]:
        """Run ``step`` on every task not yet done; return all tasks' results in task order."""
        keys = [t.key for t in tasks]
        if len(set(keys)) != len(keys):
            raise AssayError(f"stage {stage}: task keys are not unique")
        results: list[dict[str, Any] | None] = [None] * len(tasks)
        todo: list[int] = []
        for i, t in enumerate(tasks):
            m = _marker(state_dir, stage, t.key)
            if m.exists():
                results[i] = read_json(m)
            else:
                todo.append(i)
        if todo:
            (state_dir / stage).mkdir(parents=True, exist_ok=True)
            progress = Progress(stage, len(tasks), sum(t.nbytes for t in tasks), len(tasks) - len(todo))
            try:

                def on_done(i: int, res: dict[str, Any]) -> None:
                    results[i] = res
                    progress.update(res, tasks[i].nbytes)

                self._execute(stage, step, tasks, todo, state_dir, on_done)
            finally:
                progress.close()
        return [r for r in results if r is not None]

    @abstractmethod
    def _execute(
        self,
        stage: str,
        step: Step,
        tasks: Sequence[Task],
        todo: list[int],
        state_dir: Path,
        on_done: Callable[[int, dict[str, Any]], None],
    ) -> None: ...

    def close(self) -> None:  # noqa: B027 (optional hook)
        pass


class LocalExecutor(Executor):
    """Runs tasks one after another in this process: for small inputs and debugging."""

    def _execute(self, stage, step, tasks, todo, state_dir, on_done):  # type: ignore[no-untyped-def]
        for i in todo:
            on_done(i, run_task(step, tasks[i], i, len(tasks), str(_marker(state_dir, stage, tasks[i].key))))


class RayExecutor(Executor):
    """Runs tasks as Ray tasks. Without an address, ``ray.init`` starts a local Ray on this machine;
    ``address`` (or RAY_ADDRESS) joins an existing cluster. RetryableError is retried ``retries`` times."""

    def __init__(self, workers: int | None = None, address: str | None = None, retries: int = 2) -> None:
        import ray

        self.ray = ray
        self.retries = retries
        self.started = False
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {
                "include_dashboard": False,
                "log_to_driver": True,
                "configure_logging": False,
            }
            address = address or os.environ.get("RAY_ADDRESS")
            if address:
                kwargs["address"] = address
            else:
                kwargs["num_cpus"] = workers or os.cpu_count() or 1
                kwargs["object_store_memory"] = 256 * 1024 * 1024
            # Workers must see the same `assay`: keep the driver's environment (PYTHONPATH included).
            ray.init(**kwargs)
            self.started = True

    def _execute(self, stage, step, tasks, todo, state_dir, on_done):  # type: ignore[no-untyped-def]
        ray = self.ray
        remote = ray.remote(run_task).options(
            num_cpus=1, max_retries=self.retries, retry_exceptions=[RetryableError], name=f"assay.{stage}"
        )
        step_ref = ray.put(step)
        pending = {
            remote.remote(step_ref, tasks[i], i, len(tasks), str(_marker(state_dir, stage, tasks[i].key))): i
            for i in todo
        }
        try:
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                ref = ready[0]
                i = pending.pop(ref)
                try:
                    res = ray.get(ref)
                except ray.exceptions.RayTaskError as e:
                    cause = e.cause if isinstance(e.cause, BaseException) else None
                    if isinstance(cause, AssayError):
                        raise cause from e
                    raise AssayError(f"stage {stage}, task {tasks[i].key} failed: {cause or e}") from e
                on_done(i, res)
        finally:
            for ref in pending:
                ray.cancel(ref, force=True)

    def close(self) -> None:
        if self.started:
            self.ray.shutdown()


def make_executor(
    kind: str, workers: int | None = None, address: str | None = None, retries: int = 2
) -> Executor:
    if kind == "local":
        return LocalExecutor()
    if kind == "ray":
        return RayExecutor(workers=workers, address=address, retries=retries)
    raise AssayError(f"unknown executor {kind!r}; valid: local, ray")
