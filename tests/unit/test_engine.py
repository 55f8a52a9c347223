"""The run over many hosts: one host's bug fails that host, not the run."""

from __future__ import annotations

from pathlib import Path

import pytest

from provisioner.commands import quote
from provisioner.run import engine, session
from provisioner.run.engine import RunOptions
from provisioner.run.session import HostJob
from provisioner.secrets.values import Secret
from provisioner.step import Plan, Probed, Step
from tests.unit.fakes import LocalShell, Quiet, host_config, role_of


def marker_role(path: Path, broken_on: str = "") -> object:
    """Writes ``path``/<host>; its decision raises ValueError on host ``broken_on``."""
    def steps(host: object) -> list[Step]:
        name = host.name  # type: ignore[attr-defined]

        def decide(probed: Probed) -> Plan:
            if name == broken_on:
                raise ValueError(f"role bug on {name} near hunter2")
            return Plan("written", action=f"touch {quote(str(path / name))}")

        return [Step(f"marker {name}", "false", decide)]

    role = role_of([])
    return type(role)(role.name, role.path, {}, {}, steps)


def test_a_bug_on_one_host_fails_that_host_with_its_traceback_and_the_others_go_on(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(session, "open_connection", lambda config: LocalShell())
    monkeypatch.setattr(engine, "prepare_keepers", lambda configs, workers: None)
    markers = tmp_path / "markers"
    markers.mkdir()
    role = marker_role(markers, broken_on="web2")
    jobs = [HostJob(host_config(name, f"192.0.2.{i}"), (role,),  # type: ignore[arg-type]
                    {"password": Secret("hunter2")})
            for i, name in enumerate(("web1", "web2", "web3"), start=1)]

    run = engine.run(jobs, RunOptions(parallel=3), Quiet())

    assert run.exit_code == 1
    error = run.hosts["web2"].error or ""
    assert error.startswith("internal error (a bug") and "ValueError: role bug on web2" in error
    assert "hunter2" not in error
    assert sorted(p.name for p in markers.iterdir()) == ["web1", "web3"]


def test_a_bugs_traceback_is_masked_of_values_read_on_the_host_too(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(session, "open_connection", lambda config: LocalShell())
    monkeypatch.setattr(engine, "prepare_keepers", lambda configs, workers: None)

    def crash(probed: Probed) -> Plan:
        raise ValueError("the server said: password 'read-on-the-host' is wrong")

    def steps(host: object) -> list[Step]:
        read = Step("reads a host secret", "true",
                    lambda probed: Plan("ok", secrets=(Secret("read-on-the-host"),)))
        return [read, Step("crashes", "true", crash)]

    role = role_of([])
    role = type(role)(role.name, role.path, {}, {}, steps)
    job = HostJob(host_config("db1", "192.0.2.1"), (role,), {})  # type: ignore[arg-type]

    error = engine.run([job], RunOptions(), Quiet()).hosts["db1"].error or ""

    assert "ValueError: the server said" in error and "read-on-the-host" not in error
