"""The rollout against fake hosts: what is sent where, in which order, and what a failure
undoes (provisioner/deploy/rollout.py). The fake release's scripts are words the fake host
answers; the lock and history scripts are the real ones."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from provisioner.deploy import history, lock
from provisioner.deploy.rollout import (
    HostState,
    Request,
    _deploy_read_hosts,
    kept_versions,
)
from provisioner.release import Artifact, InstanceState, Preflight
from provisioner.transport.remote import Result


@dataclass(frozen=True)
class FakeRelease:
    name: str = "api"
    instances: tuple[str, ...] = ("8000", "8001")
    keep_releases: int = 2
    state_dir: str = "/var/lib/provisioner/apps/api"
    backup_host: str = ""
    move_timeout: int = 60
    archives: Path | None = None
    migrates: bool = False

    def artifact(self, version: str) -> Artifact | None:
        if self.archives is None:
            return None
        return Artifact(self.archives / f"api-{version}.tar", f"/srv/{version}.tar")

    def preflight(self, version: str) -> str:
        return f"PREFLIGHT {version}"

    def parse_preflight(self, output: str) -> Preflight:
        return Preflight((), True)

    def prepare(self, version: str) -> str:
        return f"PREPARE {version}"

    def migration(self, version: str) -> str | None:
        return f"MIGRATE {version}" if self.migrates else None

    def move(self, instance: str, version: str) -> str:
        return f"MOVE {instance} {version}"

    def states(self) -> str:
        return "STATES"

    def parse_states(self, output: str) -> list[InstanceState]:
        return []

    def prune(self, keep: list[str]) -> str:
        return f"PRUNE {' '.join(keep)}"


@dataclass
class FakeSession:
    """A host that answers each script by its first word; ``fail`` maps a script to the
    Result it gets instead of success."""

    name: str
    log: list[str]
    fail: dict[str, Result] = field(default_factory=dict)
    lock_held_by: str = ""

    def run_script(self, script: str, timeout: float | None = None) -> Result:
        self.log.append(f"{self.name}: {_summary(script)}")
        if script in self.fail:
            return self.fail[script]
        if "set -C" in script and self.lock_held_by:
            if "token=stale" in script:
                return Result("", "", 0)
            return Result(self.lock_held_by, "", lock.HELD)
        return Result(f"instance {script.split()[1] if script.startswith('MOVE') else ''}: "
                      f"serves", "", 0)


def _summary(script: str) -> str:
    if "set -C" in script:
        return "LOCK"
    if "token=" in script and "rm -f" in script and "printf" not in script:
        return "UNLOCK"
    if "history" in script and ">>" in script:
        result = next((word for word in ("ok", "rolled back", "interrupted", "failed")
                       if f'"result": "{word}"' in script), "other")
        prune = next((line for line in script.splitlines() if line.startswith("PRUNE")), "")
        return f"RECORD {result}{' ' + prune if prune else ''}"
    return script.splitlines()[0]


def host(name: str, log: list[str], *, version: str = "v1", release: FakeRelease | None = None,
         **session: Any) -> HostState:
    release = release or FakeRelease()
    states = [InstanceState(instance, int(instance), version, True)
              for instance in release.instances] if version else []
    from provisioner.deploy.rollout import Target

    target = Target(job=_job(name), release=release)
    return HostState(target, FakeSession(name, log, **session),  # type: ignore[arg-type]
                     Preflight((), True), states, [])


def _job(name: str) -> Any:
    @dataclass(frozen=True)
    class Config:
        name: str

    @dataclass(frozen=True)
    class Job:
        config: Config

    return Job(Config(name))


def said(messages: list[tuple[str, bool]]) -> str:
    return "\n".join(text for text, _ in messages)


def run(hosts: list[HostState], request: Request) -> tuple[int, list[tuple[str, bool]]]:
    messages: list[tuple[str, bool]] = []
    code = _deploy_read_hosts(hosts, request, lambda text, error: messages.append((text, error)))
    return code, messages


def test_every_host_is_locked_before_any_is_touched_and_moved_instance_by_instance() -> None:
    log: list[str] = []
    hosts = [host("a", log), host("b", log)]

    code, _ = run(hosts, Request("v2", who="me"))

    assert code == 0
    assert log == ["a: LOCK", "b: LOCK",
                   "a: PREPARE v2", "a: MOVE 8000 v2", "a: MOVE 8001 v2",
                   "b: PREPARE v2", "b: MOVE 8000 v2", "b: MOVE 8001 v2",
                   "a: RECORD ok PRUNE v2 v1", "b: RECORD ok PRUNE v2 v1"]


def test_a_problem_on_any_host_changes_nothing_on_every_host() -> None:
    log: list[str] = []
    hosts = [host("a", log), host("b", log)]
    hosts[1].preflight = Preflight(("nginx is not running",), True)

    code, messages = run(hosts, Request("v2"))

    assert code == 1 and log == []
    assert "b: nginx is not running" in said(messages)
    assert "Nothing was changed on any host" in said(messages)


def test_a_version_without_image_or_archive_does_not_exist(tmp_path: Path) -> None:
    log: list[str] = []
    target = host("a", log, release=FakeRelease(archives=tmp_path))
    target.preflight = Preflight((), False)

    code, messages = run([target], Request("v9"))

    assert code == 1 and log == []
    assert f"version v9 of api does not exist: the host has no image of it and there is no " \
           f"archive {tmp_path / 'api-v9.tar'}" in said(messages)


def test_a_failing_move_sends_every_switched_instance_back_newest_first() -> None:
    log: list[str] = []
    failing = Result("instance 8001: version v2 on port 18001 is not healthy after 8 s\n"
                     "last log lines of api@18001.service:\n  | boom", "", 3)
    hosts = [host("a", log), host("b", log, fail={"MOVE 8001 v2": failing})]

    code, messages = run(hosts, Request("v2"))

    assert code == 1
    assert log[log.index("b: MOVE 8001 v2") + 1:] == [
        "b: MOVE 8000 v1", "a: MOVE 8001 v1", "a: MOVE 8000 v1",
        "a: RECORD rolled back PRUNE v1", "b: RECORD rolled back PRUNE v1"]
    errors = [text for text, error in messages if error]
    assert any("not healthy after 8 s" in text and "| boom" in text for text in errors)


def test_an_instance_already_serving_the_version_healthy_is_left_alone() -> None:
    log: list[str] = []
    target = host("a", log, version="v2")

    code, messages = run([target], Request("v2"))

    assert code == 0 and not any(line.startswith("a: MOVE") for line in log)
    assert "a: instance 8000: already serves v2, healthy" in said(messages)


def test_a_lock_held_elsewhere_gives_back_the_locks_taken_and_touches_nothing() -> None:
    log: list[str] = []
    record = lock.render_record({"token": "t1", "action": "deploy", "version": "v7",
                                 "who": "alice@laptop", "since": "2026-12-04T10:00:00Z",
                                 "controller": "laptop", "pid": "1", "message": "hotfix"})
    hosts = [host("a", log), host("b", log, lock_held_by=record)]

    code, messages = run(hosts, Request("v2"))

    assert code == 1
    assert log == ["a: LOCK", "b: LOCK", "a: UNLOCK"]
    assert "deploy of v7 by alice@laptop since 2026-12-04T10:00:00Z (from laptop, process 1, " \
           "message: hotfix)" in said(messages)
    assert "--force-unlock --host b" in said(messages)


def test_a_lock_whose_process_on_this_machine_is_gone_is_taken_over() -> None:
    log: list[str] = []
    gone = _a_gone_pid()
    record = lock.render_record({"token": "stale", "version": "v2", "who": "me",
                                 "controller": socket.gethostname(), "pid": str(gone)})
    target = host("a", log, lock_held_by=record)

    code, messages = run([target], Request("v2"))

    assert code == 0
    assert log[:2] == ["a: LOCK", "a: LOCK"]
    assert f"process {gone}" in said(messages) and "that process is gone" in said(messages)


def _a_gone_pid() -> int:
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    return pid


def test_the_migration_runs_once_on_the_first_host_after_the_backup() -> None:
    log: list[str] = []
    release = FakeRelease(migrates=True, backup_host="db1")
    hosts = [host("a", log, release=release), host("b", log, release=release)]
    backups: list[str] = []

    def backup(name: str) -> int:
        backups.append(name)
        return 0

    code, _ = run(hosts, Request("v2", backup=backup))

    assert code == 0 and backups == ["db1"]
    assert [line for line in log if "MIGRATE" in line] == ["a: MIGRATE v2"]
    assert log.index("a: MIGRATE v2") < log.index("a: MOVE 8000 v2")


def test_a_failed_backup_stops_the_deploy_before_the_migration() -> None:
    log: list[str] = []
    release = FakeRelease(migrates=True, backup_host="db1")

    code, messages = run([host("a", log, release=release)], Request("v2", backup=lambda _: 1))

    assert code == 1
    assert not any("MIGRATE" in line or "MOVE" in line for line in log)
    assert "the migration did not run and no instance moved" in said(messages)


@pytest.mark.parametrize(("keep", "wanted"), [(2, ["v3", "v2"]), (3, ["v3", "v2", "v1"])])
def test_kept_versions_are_the_new_one_the_previous_and_the_latest_good(
        keep: int, wanted: list[str]) -> None:
    target = host("a", [], version="v2", release=FakeRelease(keep_releases=keep))
    target.history = [history.Entry("deploy", "v0", "", "", "", 0, "ok"),
                      history.Entry("deploy", "v1", "v0", "", "", 0, "ok"),
                      history.Entry("deploy", "v9", "v1", "", "", 0, "rolled back"),
                      history.Entry("deploy", "v2", "v1", "", "", 0, "ok")]

    assert kept_versions(target, "v3") == wanted


def test_the_previous_version_is_the_one_the_latest_good_deploy_replaced() -> None:
    entries = [history.Entry("deploy", "v1", "", "", "", 0, "ok"),
               history.Entry("deploy", "v2", "v1", "", "", 0, "ok"),
               history.Entry("deploy", "v3", "v2", "", "", 0, "rolled back")]

    assert history.previous_version(entries, "v2") == "v1"
    assert history.previous_version(entries, "v1") == ""


def test_a_lock_record_keeps_one_line_per_field() -> None:
    text = lock.render_record({"token": "t", "message": "two\nlines", "who": "me"})

    assert lock.parse_record(text).fields["message"] == "two lines"
    assert text.count("\n") == len(lock.FIELDS)


def test_a_damaged_history_line_is_skipped() -> None:
    good = '{"action": "deploy", "version": "v1", "previous": "", "who": "me", ' \
           '"started": "now", "duration_s": 1.0, "result": "ok"}'

    assert [entry.version for entry in history.parse(f"garbage\n{good}\n{{}}")] == ["v1"]


def test_a_batch_moves_its_hosts_side_by_side_and_the_first_one_migrates_first() -> None:
    log: list[str] = []
    release = FakeRelease(migrates=True)
    hosts = [host(name, log, release=release) for name in ("a", "b", "c")]

    code, _ = run(hosts, Request("v2", batch=2))

    assert code == 0
    assert log.index("a: MIGRATE v2") < min(log.index(f"{name}: MOVE 8000 v2")
                                           for name in "abc")
    assert max(log.index(f"{name}: MOVE 8001 v2") for name in "ab") < log.index("c: PREPARE v2")
    assert [line for line in log if "PREPARE" in line].count("a: PREPARE v2") == 1


def test_a_rollback_after_a_deploy_that_did_not_finish_goes_to_what_served_before_it() -> None:
    entries = [history.Entry("deploy", "v1", "v0", "", "", 0, "ok"),
               history.Entry("deploy", "s1", "v1", "", "", 0, "interrupted")]

    assert history.rollback_target(entries, {"s1", "v1"}) == "v1"
    assert history.rollback_target(entries, {"s1"}) == "v1"
    assert history.rollback_target(entries[:1], {"v1"}) == "v0"


def test_an_entry_never_joins_a_line_cut_short() -> None:
    script = history.append("/h", history.Entry("deploy", "v2", "v1", "me", "now", 1, "ok"))

    assert script.startswith('if [ -s /h ] && [ -n "$(tail -c 1 /h)" ]; then echo >> /h; fi')
    good = ('{"action": "deploy", "version": "v1", "previous": "", "who": "", "started": "", '
            '"duration_s": 0, "result": "ok"}')
    assert history.read_entries(f'{{"act\n{good}\n')[1] == 1
