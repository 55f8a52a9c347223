"""The systemd machinery's shell, run by the local sh with stand-ins for systemctl and
systemd-analyze on PATH that log their arguments and answer as told: the restart handler, the
restart markers, and the strict verify script the units' config set runs."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from provisioner.content.roles import PROJECT_ROOT, load_role
from roles.systemd import machinery
from roles.systemd.manifest import restart_dir

ROLE = load_role(PROJECT_ROOT / "roles" / "systemd")


def stand_in(bin_dir: Path, name: str, body: str) -> None:
    """A program ``name`` that logs its argv to bin_dir/calls, then runs ``body``."""
    path = bin_dir / name
    path.write_text(f'#!/bin/sh\necho "{name} $*" >> {bin_dir}/calls\n{body}\n')
    path.chmod(0o755)


def run(script: str, bin_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    return subprocess.run(["sh", "-c", script, "test", *args], capture_output=True, text=True,
                          env=environment, check=False)


def calls(bin_dir: Path) -> list[str]:
    log = bin_dir / "calls"
    return log.read_text().splitlines() if log.exists() else []


@pytest.fixture
def markers(tmp_path: Path) -> Path:
    directory = tmp_path / "restart"
    directory.mkdir()
    return directory


def handler_action(markers: Path) -> str:
    return machinery.restart_handler("systemd").action.replace(restart_dir("systemd"),
                                                                str(markers))


def test_the_handler_restarts_each_marked_unit_and_drops_its_marker(tmp_path: Path,
                                                                    markers: Path) -> None:
    stand_in(tmp_path, "systemctl", "exit 0")
    (markers / "hello.service").touch()
    (markers / "app@.service").touch()
    assert run(handler_action(markers), tmp_path).returncode == 0
    assert sorted(calls(tmp_path)) == ["systemctl try-restart -- app@*.service",
                                       "systemctl try-restart -- hello.service"]
    assert list(markers.iterdir()) == []


def test_a_failed_restart_fails_the_handler_and_keeps_the_marker(tmp_path: Path,
                                                                 markers: Path) -> None:
    stand_in(tmp_path, "systemctl", "echo 'Job for hello.service failed.' >&2; exit 1")
    (markers / "hello.service").touch()
    done = run(handler_action(markers), tmp_path)
    assert done.returncode == 1 and "Job for hello.service failed." in done.stderr
    assert (markers / "hello.service").exists()


def test_no_marker_restarts_nothing(tmp_path: Path, markers: Path) -> None:
    stand_in(tmp_path, "systemctl", "exit 0")
    assert run(handler_action(markers), tmp_path).returncode == 0
    assert calls(tmp_path) == []


def test_only_a_running_unit_is_marked(tmp_path: Path, markers: Path) -> None:
    stand_in(tmp_path, "systemctl", 'case "$*" in *hello.service) exit 0 ;; esac; exit 3')
    command = machinery.marks_command("systemd", ["hello.service", "idle.service"])
    assert run(command.replace(restart_dir("systemd"), str(markers)), tmp_path).returncode == 0
    assert sorted(path.name for path in markers.iterdir()) == ["hello.service"]


def test_a_template_is_marked_when_any_instance_runs(tmp_path: Path, markers: Path) -> None:
    stand_in(tmp_path, "systemctl", "echo 'app@8000.service loaded active running app'")
    command = machinery.marks_command("systemd", ["app@.service"])
    assert run(command.replace(restart_dir("systemd"), str(markers)), tmp_path).returncode == 0
    assert [path.name for path in markers.iterdir()] == ["app@.service"]
    assert "--state=active" in calls(tmp_path)[0] and "app@*.service" in calls(tmp_path)[0]


def verify(tmp_path: Path, verify_says: str, *args: str) -> subprocess.CompletedProcess[str]:
    # The template's one Jinja expression is the banner, in a comment: sh can run it as it is.
    script = (ROLE.template_dir / machinery.VERIFY_TEMPLATE).read_text()
    stand_in(tmp_path, "systemd-analyze",
             f'if [ "$1" = calendar ]; then [ "$3" != bad ] || {{ echo "Failed to parse '
             f"calendar specification '$3'\" >&2; exit 1; }}; exit 0; fi\n{verify_says}")
    return run(script, tmp_path, *args)


def test_clean_units_pass_and_say_nothing(tmp_path: Path) -> None:
    done = verify(tmp_path, "exit 0", "/u/a.service", "/u/a.timer", "--", "daily")
    assert (done.returncode, done.stdout) == (0, "")
    assert calls(tmp_path) == ["systemd-analyze verify -- /u/a.service /u/a.timer",
                               "systemd-analyze calendar -- daily"]


def test_a_warning_about_one_of_the_units_fails_with_systemds_words(tmp_path: Path) -> None:
    said = "/u/a.service:21: Failed to parse protect system value, ignoring: bogus"
    done = verify(tmp_path, f"echo '{said}' >&2; exit 0", "/u/a.service")
    assert done.returncode == 1 and said in done.stdout


def test_a_warning_about_another_unit_does_not_fail(tmp_path: Path) -> None:
    done = verify(tmp_path, "echo '/lib/systemd/system/x.service:3: old key' >&2; exit 0",
                  "/u/a.service")
    assert done.returncode == 0


def test_an_error_fails_with_systemds_words(tmp_path: Path) -> None:
    done = verify(tmp_path, "echo 'a.service: Command /nope is not executable' >&2; exit 1",
                  "/u/a.service")
    assert done.returncode == 1 and "Command /nope is not executable" in done.stdout


def test_a_calendar_systemd_refuses_fails_with_its_words(tmp_path: Path) -> None:
    done = verify(tmp_path, "exit 0", "/u/a.service", "/u/a.timer", "--", "daily", "bad")
    assert done.returncode == 1 and "Failed to parse calendar specification 'bad'" in done.stdout
