"""Run strategies: every host at once, or batch by batch stopping at the first failure."""

from __future__ import annotations

import threading
import time

import pytest

from provisioner.change import Change
from provisioner.run.results import HostResult, RunResult
from provisioner.run.session import HostJob
from provisioner.run.strategies import in_parallel, in_serial_batches
from tests.unit.fakes import host_config


def jobs(*names: str) -> list[HostJob]:
    return [HostJob(host_config(name, f"192.0.2.{index}"), (), {})
            for index, name in enumerate(names, start=1)]


class Recorder:
    """Work that records which hosts started, failing the hosts named in ``failing``."""

    def __init__(self, failing: tuple[str, ...] = (), pause: float = 0.0) -> None:
        self.started: list[str] = []
        self.failing, self.pause = failing, pause
        self.at_once = self.most_at_once = 0
        self.lock = threading.Lock()

    def __call__(self, job: HostJob) -> HostResult:
        with self.lock:
            self.started.append(job.config.name)
            self.at_once += 1
            self.most_at_once = max(self.most_at_once, self.at_once)
        time.sleep(self.pause)
        with self.lock:
            self.at_once -= 1
        result = HostResult(job.config.name)
        if job.config.name in self.failing:
            result.changes.append(Change.failure("step", "broke"))
        return result


def test_parallel_runs_every_host_and_keeps_the_jobs_order() -> None:
    work = Recorder(pause=0.05)
    results = in_parallel(jobs("a", "b", "c"), work, workers=3)
    assert [r.name for r in results] == ["a", "b", "c"]
    assert work.most_at_once == 3


def test_parallel_never_runs_more_hosts_at_once_than_its_workers() -> None:
    work = Recorder(pause=0.05)
    in_parallel(jobs("a", "b", "c", "d"), work, workers=2)
    assert work.most_at_once == 2


def test_serial_batches_run_batch_after_batch() -> None:
    work = Recorder(pause=0.05)
    results = in_serial_batches(jobs("a", "b", "c"), work, batch_size=1)
    assert work.started == ["a", "b", "c"] and work.most_at_once == 1
    assert not any(r.skipped for r in results)


def test_serial_batches_stop_after_a_batch_with_a_failed_host() -> None:
    work = Recorder(failing=("b",))
    results = in_serial_batches(jobs("a", "b", "c", "d"), work, batch_size=2)
    assert work.started == ["a", "b"]
    assert [r.skipped for r in results[2:]] == ["not started: b failed in an earlier batch"] * 2
    assert RunResult({r.name: r for r in results}).exit_code == 1


def test_a_gate_between_batches_can_stop_the_rest() -> None:
    work = Recorder()
    asked: list[list[str]] = []

    def gate(done: object) -> str | None:
        asked.append([r.name for r in done])  # type: ignore[attr-defined]
        return "the service answers 502 through nginx" if len(asked) == 2 else None

    results = in_serial_batches(jobs("a", "b", "c"), work, batch_size=1, gate=gate)
    assert asked == [["a"], ["a", "b"]]
    assert work.started == ["a", "b"]
    assert results[2].skipped == "not started: the service answers 502 through nginx"


def test_the_gate_is_not_asked_after_the_last_batch() -> None:
    def gate(done: object) -> str | None:
        raise AssertionError("asked after the last batch")

    results = in_serial_batches(jobs("a"), Recorder(), batch_size=1, gate=gate)
    assert [r.name for r in results] == ["a"]


def test_a_batch_size_below_one_is_a_bug() -> None:
    with pytest.raises(ValueError):
        in_serial_batches(jobs("a"), Recorder(), batch_size=0)


def test_serial_batches_run_no_more_hosts_at_once_than_the_workers_allow() -> None:
    work = Recorder(pause=0.05)
    in_serial_batches(jobs("a", "b", "c", "d"), work, batch_size=4, workers=2)
    assert work.most_at_once == 2
