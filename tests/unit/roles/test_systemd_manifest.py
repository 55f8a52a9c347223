"""The systemd machinery's manifest and accounts: what it records, removes and refuses, from what
its probe read; pure decisions over hand-made probe output."""

from __future__ import annotations

import pytest

from provisioner.step import Refused
from roles.systemd.machinery import plan_system_account
from roles.systemd.manifest import (
    ManifestState,
    entries,
    parse_manifest,
    plan_manifest,
    probe_manifest,
    removal_command,
)
from roles.systemd.render import header
from roles.systemd.units import UnitSpec, unit_spec

HELLO = unit_spec({"name": "hello", "command": "/bin/true"})
TICK = unit_spec({"name": "tick", "command": "/bin/true", "timer": {"on_calendar": "daily"}})
APP = unit_spec({"name": "app@", "user": "app", "command": "/bin/app %i",
                 "instances": [8000, 8001]})
OURS = header("systemd").rstrip("\n")


def state(*recorded: str, hello_file: str | None = None) -> ManifestState:
    """The manifest's entries, and /etc/systemd/system/hello.service's first line if given."""
    occupied = {} if hello_file is None else {"/etc/systemd/system/hello.service": hello_file}
    return ManifestState(recorded, occupied)


def plan(specs: list[UnitSpec], current: ManifestState) -> tuple[str, str | None]:
    decided = plan_manifest("systemd", specs, current)
    return decided.reason, decided.action


def test_the_manifest_records_files_then_instances() -> None:
    assert entries([HELLO, TICK, APP]) == ("hello.service", "tick.service", "tick.timer",
                                           "app@.service", "app@8000.service",
                                           "app@8001.service")


def test_a_fresh_host_records_the_units_before_they_are_written() -> None:
    reason, action = plan([HELLO, TICK], state())
    assert reason == "recorded hello.service, tick.service, tick.timer"
    assert action is not None and "manifest.new" in action and "disable" not in action


def test_a_converged_manifest_needs_nothing() -> None:
    reason, action = plan([HELLO], state("hello.service",
                                         hello_file=OURS))
    assert action is None and reason == "1 units recorded, none stale"


def test_a_unit_taken_out_of_the_inventory_is_stopped_disabled_and_removed() -> None:
    reason, action = plan([HELLO], state("hello.service", "tick.service", "tick.timer"))
    assert reason == "stale tick.service, tick.timer stopped, disabled and removed"
    assert action is not None
    assert action.index("systemctl stop -- tick.timer") < \
        action.index("systemctl stop -- tick.service")
    assert "systemctl disable --quiet -- tick.timer" in action
    assert "/etc/systemd/system/tick.timer" in action and "/var/backups/provisioner" in action
    assert "/etc/provisioner/units/tick.env" in action
    assert action.index("systemctl daemon-reload") < action.index("manifest.new")


def test_an_instance_taken_out_is_stopped_but_its_template_stays() -> None:
    reason, action = plan([unit_spec({"name": "app@", "user": "app", "command": "/bin/app",
                                      "instances": [8000]})],
                          state("app@.service", "app@8000.service", "app@8001.service"))
    assert reason == "stale app@8001.service stopped, disabled and removed"
    assert action is not None and "systemctl stop -- app@8001.service" in action
    assert "/etc/systemd/system/app@.service" not in action


def test_removing_tolerates_a_unit_that_never_went_live() -> None:
    command = removal_command("systemd", ["gone.service"])
    assert "!= not-found" in command and "if [ -e /etc/systemd/system/gone.service ]" in command


@pytest.mark.parametrize("directory", ["/usr/lib/systemd/system", "/lib/systemd/system",
                                       "/run/systemd/system", "/usr/local/lib/systemd/system",
                                       "/etc/systemd/system.control", "/run/systemd/transient"])
def test_a_name_another_unit_has_is_refused(directory: str) -> None:
    ssh = unit_spec({"name": "ssh", "command": "/bin/true"})
    with pytest.raises(Refused, match=f"{directory}/ssh.service"):
        plan_manifest("systemd", [ssh], ManifestState((), {f"{directory}/ssh.service": "#"}))


def test_a_file_someone_wrote_by_hand_is_refused() -> None:
    with pytest.raises(Refused, match="someone else"):
        plan([HELLO], state(hello_file="[Unit]"))


def test_a_file_another_role_wrote_is_refused() -> None:
    other = header("app").rstrip("\n")
    with pytest.raises(Refused, match="another role"):
        plan([HELLO], state(hello_file=other))


def test_a_file_of_ours_missing_from_the_manifest_is_taken_back() -> None:
    reason, action = plan([HELLO], state(hello_file=OURS))
    assert reason == "recorded hello.service" and action is not None


def test_a_recorded_unit_is_not_refused_for_its_own_file() -> None:
    reason, _ = plan([HELLO], state("hello.service",
                                    hello_file="[Unit] edited"))
    assert reason == "1 units recorded, none stale"


def test_the_probe_output_is_read_back() -> None:
    parsed = parse_manifest("hello.service\ntick.timer\n== manifest end\n"
                            "/etc/systemd/system/hello.service|# Managed\n")
    assert parsed == ManifestState(("hello.service", "tick.timer"),
                                   {"/etc/systemd/system/hello.service": "# Managed"})


def test_the_probe_reads_templates_but_not_instances() -> None:
    probe = probe_manifest("systemd", [APP])
    assert "/etc/systemd/system/app@.service" in probe and "app@8000" not in probe


def test_an_existing_user_is_left_alone() -> None:
    assert plan_system_account("hello", "hello", "hello:x:998:998::/:/bin/sh\n==\n").action \
        is None


@pytest.mark.parametrize(("group", "groups", "expected"), [
    ("hello", "", "useradd --system --no-create-home --home-dir /nonexistent --shell "
                  "/usr/sbin/nologin --user-group hello"),
    ("hello", "hello:x:997:\n", "--gid hello hello"),
    ("web", "", "groupadd --system web && useradd"),
    ("web", "web:x:33:\n", "--gid web hello")])
def test_a_missing_user_is_made_a_system_user_with_its_group(group: str, groups: str,
                                                             expected: str) -> None:
    action = plan_system_account("hello", group, f"==\n{groups}").action
    assert action is not None and expected in action
