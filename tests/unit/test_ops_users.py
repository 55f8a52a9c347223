"""Users, authorized keys and sudoers drop-ins."""

from __future__ import annotations

import subprocess

import pytest

from provisioner.ops.file_writes import DesiredFile, write_file_action
from provisioner.ops.users import (
    UserState,
    ensure_authorized_keys,
    ensure_group,
    ensure_sudoers,
    ensure_user,
    parse_user,
    plan_group,
    plan_user,
    probe_user,
)
from provisioner.step import Plan, Probed
from tests.unit.fakes import make_host

ADMIN = "admin:x:1000:1000:Admin,,,:/home/admin:/bin/bash\nadmin sudo adm\n"


# --- parse_user -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        (ADMIN, UserState("/bin/bash", "/home/admin", frozenset({"admin", "sudo", "adm"}))),
        ("deploy:x:1001:1001::/srv/deploy:/usr/sbin/nologin\n",
         UserState("/usr/sbin/nologin", "/srv/deploy", frozenset())),
        ("", None),
    ],
    ids=["with-groups", "without-groups-line", "absent"],
)
def test_parse_user(output: str, expected: UserState | None) -> None:
    assert parse_user(output) == expected


def test_probe_user_runs_read_only_for_root() -> None:
    completed = subprocess.run(["sh", "-c", probe_user("root")], capture_output=True, text=True,
                               timeout=30, check=False)

    parsed = parse_user(completed.stdout)

    assert parsed is not None
    assert (parsed.home, "root" in parsed.groups) == ("/root", True)


def test_probe_user_of_a_missing_user_parses_as_absent() -> None:
    completed = subprocess.run(["sh", "-c", probe_user("no-such-user-xyz")], capture_output=True,
                               text=True, timeout=30, check=False)

    assert parse_user(completed.stdout) is None


# --- plan_user --------------------------------------------------------------------------------

CURRENT = UserState("/bin/bash", "/home/admin", frozenset({"admin", "sudo", "adm"}))


@pytest.mark.parametrize(
    ("current", "shell", "groups", "reason", "action"),
    [
        (None, "/bin/bash", ["sudo"], "created",
         "useradd --create-home --home-dir /home/admin --shell /bin/bash --user-group "
         "--groups sudo admin"),
        (None, "/bin/bash", [], "created",
         "useradd --create-home --home-dir /home/admin --shell /bin/bash --user-group admin"),
        (CURRENT, "/bin/bash", ["sudo"], "already as desired", None),
        (CURRENT, "/bin/bash", [], "already as desired", None),
        (CURRENT, "/bin/zsh", ["sudo"], "shell /bin/bash -> /bin/zsh",
         "usermod --shell /bin/zsh admin"),
        (CURRENT, "/bin/bash", ["sudo", "docker", "ssh-users"],
         "added to docker, ssh-users", "usermod --append --groups docker,ssh-users admin"),
        (CURRENT, "/bin/sh", ["docker"], "shell /bin/bash -> /bin/sh, added to docker",
         "usermod --shell /bin/sh --append --groups docker admin"),
    ],
    ids=["create-with-groups", "create", "converged", "extra-groups-kept", "shell-differs",
         "missing-groups-appended", "shell-and-groups"],
)
def test_plan_user(current: UserState | None, shell: str, groups: list[str], reason: str,
                   action: str | None) -> None:
    plan = plan_user("admin", current, shell, "/home/admin", groups)

    assert (plan.reason, plan.action) == (reason, action)


def test_ensure_user_decides_from_the_recorded_probe() -> None:
    step = ensure_user(make_host(), "admin", groups=["sudo"])

    assert step.decide(Probed(ADMIN)).action is None


def test_ensure_user_home_defaults_under_home() -> None:
    step = ensure_user(make_host(), "deploy")

    plan = step.decide(Probed("", exit_code=2))

    assert "--home-dir /home/deploy" in (plan.action or "")


# --- authorized keys --------------------------------------------------------------------------


def test_authorized_keys_are_a_private_directory_then_a_private_file() -> None:
    keys = ["ssh-ed25519 AAAA one@example.org  ", "ssh-ed25519 BBBB two@example.org"]

    directory, key_file = ensure_authorized_keys(make_host(), "admin", keys)

    assert (directory.decide(Probed("absent\n")).action or "").endswith(
        "mkdir -m 0700 /home/admin/.ssh\nchown admin:admin /home/admin/.ssh\n"
        "chmod 0700 /home/admin/.ssh")
    assert key_file.decide(Probed("absent\n")).action == write_file_action(DesiredFile(
        "/home/admin/.ssh/authorized_keys",
        b"ssh-ed25519 AAAA one@example.org\nssh-ed25519 BBBB two@example.org\n",
        "admin", "admin", 0o600))


# --- sudoers ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["admin.conf", "admin~", "90.admin"])
def test_ensure_sudoers_refuses_a_name_sudo_would_ignore(name: str) -> None:
    with pytest.raises(ValueError, match="would be ignored by sudo"):
        ensure_sudoers(make_host(), name, "admin ALL=(ALL) ALL\n")


def test_ensure_sudoers_validates_with_visudo_and_is_read_only_for_root() -> None:
    step = ensure_sudoers(make_host(), "90-admin", "admin ALL=(ALL) ALL\n")

    plan = step.decide(Probed("absent\n"))

    assert plan.action == write_file_action(DesiredFile(
        "/etc/sudoers.d/90-admin", b"admin ALL=(ALL) ALL\n", mode=0o440,
        validate="visudo -cqf %s"))


# --- groups -----------------------------------------------------------------------------------


def test_a_group_getent_found_is_left_alone() -> None:
    assert plan_group("ssh-users", "ssh-users:x:998:admin\n") == Plan("exists")


@pytest.mark.parametrize("output", ["", "ssh-users-old:x:997:\n"], ids=["absent", "prefix"])
def test_a_missing_group_is_created_as_a_system_group(output: str) -> None:
    assert plan_group("ssh-users", output) == Plan(
        "created", action="groupadd --system ssh-users")


def test_ensure_group_probe_reads_the_group_database_on_this_machine() -> None:
    step = ensure_group(make_host(), "root")
    completed = subprocess.run(["sh", "-c", step.probe], capture_output=True, text=True,
                               timeout=30, check=False)

    assert step.decide(Probed(completed.stdout)) == Plan("exists")
