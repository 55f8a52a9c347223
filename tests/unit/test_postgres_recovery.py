"""A change whose run dies mid-restart is finished on the host, and one cut off anyway is undone
by the next run before it decides anything (issue 16, breaker round 2, F4), and the handlers'
proof reads the server's log for what it did not apply (F5, F6)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from roles.postgres import cluster
from roles.postgres.handlers import (
    APPLY_DIR,
    APPLY_RUNNING,
    APPLY_UNIT,
    LOG_PROBLEMS,
    PREVIOUS,
    STARTING_SECONDS,
    detached,
    recover_action,
    reload_action,
    restart_action,
)
from roles.postgres.role import steps
from tests.unit.fakes import make_host

FAKE_SYSTEMD_RUN = """#!/bin/sh
# records its arguments, then runs the unit's command with the unit's output file
printf '%s\\n' "$@" > "$FAKE/systemd-run.args"
out=; for a in "$@"; do case "$a" in StandardOutput=append:*) out=${a#StandardOutput=append:};;
esac; done
for last in "$@"; do :; done
/bin/sh "$last" >> "$out" 2>&1
"""


def _run_detached(tmp_path: Path, script: str) -> subprocess.CompletedProcess[str]:
    fakes = tmp_path / "bin"
    fakes.mkdir()
    (fakes / "systemd-run").write_text(FAKE_SYSTEMD_RUN)
    (fakes / "systemctl").write_text("#!/bin/sh\nexit 0\n")  # list-units: none running
    for tool in fakes.iterdir():
        tool.chmod(0o755)
    wrapper = detached(script, "restart").replace(APPLY_DIR, str(tmp_path / "apply"))
    return subprocess.run(["sh", "-c", wrapper], capture_output=True, text=True, check=False,
                          env={**os.environ, "PATH": f"{fakes}:{os.environ['PATH']}",
                               "FAKE": str(tmp_path)})


def test_a_change_runs_in_a_transient_unit_and_its_words_and_status_come_back(
        tmp_path: Path) -> None:
    done = _run_detached(tmp_path, "echo 'the server says: $HOME stays literal'\nexit 3")

    assert done.returncode == 3
    assert done.stdout == "the server says: $HOME stays literal\n"
    arguments = (tmp_path / "systemd-run.args").read_text().split("\n")
    assert "--wait" in arguments
    assert any(argument.startswith(f"--unit={APPLY_UNIT}-") for argument in arguments)
    assert (tmp_path / "apply/restart.sh").read_text().startswith("echo 'the server says")


@pytest.mark.parametrize("action", [restart_action(), reload_action(), recover_action()])
def test_every_restart_reload_and_recovery_is_detached_from_the_connection(action: str) -> None:
    assert f'systemd-run --quiet --wait --collect --unit="{APPLY_UNIT}-$$-' in action
    # an earlier change still running there is waited out, never run beside
    assert action.index(f"while {APPLY_RUNNING}; do") < action.index("systemd-run")


def recovery_output(*, saved: bool, state: str, apply: str = "inactive") -> str:
    return "\n".join(["pg-version 15", *(["pg-saved"] if saved else []), f"pg-state {state}",
                      f"pg-apply {apply}"]) + "\n"


def test_a_save_left_with_the_server_down_is_put_back_and_started_first() -> None:
    plan = cluster.plan_recovery(recovery_output(saved=True, state="failed"))

    assert plan.action == recover_action()
    assert "PostgreSQL 15 is failed with the configuration of a change whose run was cut off" \
        in plan.reason
    assert f"({PREVIOUS}) and start the server with them" in plan.reason


def test_a_save_beside_a_running_server_is_left_to_the_handlers() -> None:
    plan = cluster.plan_recovery(recovery_output(saved=True, state="active"))

    assert plan.action is None and "runs; the save of an unfinished change" in plan.reason


def test_a_change_still_running_on_the_host_is_waited_for() -> None:
    plan = cluster.plan_recovery(recovery_output(saved=True, state="activating",
                                                 apply="active"))

    assert plan.action == recover_action() and "still runs" in plan.reason


def test_no_save_nothing_to_recover() -> None:
    assert not cluster.plan_recovery(recovery_output(saved=False, state="failed")).changes


def test_the_recovery_comes_before_the_configuration_is_decided() -> None:
    labels = [step.label for step in steps(make_host(variables=_variables()))]

    assert labels.index("PostgreSQL configuration of an interrupted change") < \
        next(index for index, label in enumerate(labels) if "conf.d" in label)


def _variables() -> dict[str, object]:
    import yaml

    from provisioner.content.roles import PROJECT_ROOT
    return yaml.safe_load((PROJECT_ROOT / "roles/postgres/defaults.yml").read_text())


def test_a_slow_start_is_waited_for_while_its_postmaster_lives() -> None:
    action = restart_action()

    assert f"-lt {STARTING_SECONDS * 2} ]" in action
    assert 'kill -0 "$new"' in action


@pytest.mark.parametrize("line", [
    'WARNING:  could not bind IPv4 address "10.77.0.99": Cannot assign requested address',
    "LOG:  SSL configuration was not reloaded",
    'LOG:  configuration file "/etc/postgresql/15/main/postgresql.conf" contains errors'])
def test_the_handlers_fail_on_what_the_log_says_was_not_applied(line: str) -> None:
    found = subprocess.run(["grep", "-E", LOG_PROBLEMS], input=line, capture_output=True,
                           text=True, check=False)
    assert found.stdout.strip() == line
    assert "grep -E" in restart_action() and LOG_PROBLEMS in reload_action()
