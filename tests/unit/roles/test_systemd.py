"""The systemd role's machinery on a hand-made host: the unit files it renders, the environment
file's quoting, the manifest's decisions (stale units removed, foreign ones refused), accounts,
the restart markers and handler, and the strict verify script, the shell parts run for real
with stand-ins for systemctl and systemd-analyze on PATH."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from provisioner.content.roles import PROJECT_ROOT, load_role
from provisioner.content.variables import merge_role_variables
from provisioner.host import Host
from provisioner.step import Probed, Step
from roles.systemd import machinery
from roles.systemd.manifest import (
    restart_dir,
)
from roles.systemd.render import header, render_service, render_timer
from roles.systemd.units import UnitSpec, read_units, unit_spec
from tests.unit.fakes import host_config

ROLE = load_role(PROJECT_ROOT / "roles" / "systemd")
HELLO: dict[str, Any] = {"name": "hello", "command": "/usr/bin/python3 -m http.server 8080",
                         "environment": {"GREETING": "hi"}}
TICK: dict[str, Any] = {"name": "tick", "command": "/bin/true",
                        "timer": {"on_calendar": ["*:0/5", "Mon 02:00"]}}


def make_host(*units: dict[str, Any]) -> Host:
    variables = merge_role_variables([ROLE], {"systemd_units": list(units)}, "test")
    return Host(host_config(roles=("systemd",)), variables,
                gather_facts=lambda: (_ for _ in ()).throw(AssertionError("no facts")))


def specs(*units: dict[str, Any]) -> list[UnitSpec]:
    return read_units({"systemd_units": list(units)})


def labels(host: Host) -> list[str]:
    return [step.label for step in ROLE.steps(host.for_role(ROLE.template_dir))]


# --- rendering ---------------------------------------------------------------------------------

def test_a_unit_file_starts_with_a_header_naming_its_manager() -> None:
    text = render_service(unit_spec(HELLO), "systemd")
    assert text.splitlines()[0] == header("systemd").rstrip("\n")
    assert "Managed by provisioner" in text.splitlines()[0] and "systemd role" in text


def test_a_service_runs_its_command_as_its_user_with_its_environment_file() -> None:
    lines = render_service(unit_spec(HELLO), "systemd").splitlines()
    for line in ("User=hello", "Group=hello", "ExecStart=/usr/bin/python3 -m http.server 8080",
                 "EnvironmentFile=/etc/provisioner/units/hello.env", "Restart=on-failure",
                 "RestartSec=2", "WantedBy=multi-user.target"):
        assert line in lines


def test_a_unit_without_environment_names_no_environment_file() -> None:
    assert "EnvironmentFile" not in render_service(unit_spec({**HELLO, "environment": {}}), "x")


def test_every_hardening_option_of_controls_11_is_in_the_unit() -> None:
    lines = render_service(unit_spec(HELLO), "systemd").splitlines()
    for line in ("NoNewPrivileges=yes", "ProtectSystem=strict", "ProtectHome=yes",
                 "PrivateTmp=yes", "PrivateDevices=yes", "CapabilityBoundingSet=",
                 "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6", "UMask=0027"):
        assert line in lines


def test_an_override_and_the_writable_paths_and_options_reach_the_unit() -> None:
    spec = unit_spec({**HELLO, "hardening": {"ProtectHome": "read-only", "PrivateTmp": None},
                      "read_write_paths": ["/var/lib/hello", "/var/log/hello"],
                      "service_options": {"MemoryMax": "256M"},
                      "unit_options": {"StartLimitBurst": 5}, "after": ["postgresql.service"]})
    lines = render_service(spec, "systemd").splitlines()
    assert "ProtectHome=read-only" in lines and not any(line.startswith("PrivateTmp")
                                                        for line in lines)
    assert "ReadWritePaths=/var/lib/hello /var/log/hello" in lines
    assert "MemoryMax=256M" in lines and "StartLimitBurst=5" in lines
    assert "After=network-online.target postgresql.service" in lines


def test_a_timers_job_has_no_install_section_and_its_timer_has_every_expression() -> None:
    spec = unit_spec(TICK)
    service = render_service(spec, "systemd")
    assert "[Install]" not in service and "Type=oneshot" in service
    assert "RestartSec" not in service
    timer = render_timer(spec, "systemd").splitlines()
    assert timer[0] == header("systemd").rstrip("\n")
    for line in ("OnCalendar=*:0/5", "OnCalendar=Mon 02:00", "Persistent=true",
                 "Unit=tick.service", "WantedBy=timers.target"):
        assert line in timer


def test_a_timers_spread_and_accuracy_reach_the_timer_only_when_given() -> None:
    timer = {"on_calendar": "daily", "randomized_delay_sec": 600, "accuracy_sec": 1}
    lines = render_timer(unit_spec({**TICK, "timer": timer}), "x").splitlines()
    assert "RandomizedDelaySec=600" in lines and "AccuracySec=1" in lines
    plain = render_timer(unit_spec(TICK), "x")
    assert "AccuracySec" not in plain and "RandomizedDelaySec" not in plain


def test_the_environment_file_escapes_what_systemd_would_unescape() -> None:
    host = make_host().for_role(machinery.TEMPLATES)
    text = host.render(machinery.ENVIRONMENT_TEMPLATE, unit_name="hello.service",
                       environment=(("A", 'x"y\\z $HOME `q`'), ("B", "plain")))
    assert 'A="x\\"y\\\\z \\$HOME \\`q\\`"' in text.splitlines()
    assert 'B="plain"' in text.splitlines()


# --- the steps ---------------------------------------------------------------------------------

def test_the_steps_come_in_order_accounts_manifest_environment_check_units_services() -> None:
    assert labels(make_host(HELLO, TICK)) == [
        "system user hello", "system user tick",
        "units of the systemd role: manifest /var/lib/provisioner/units/systemd/manifest",
        "directory /etc/provisioner/units",
        "environment /etc/provisioner/units/hello.env of hello.service",
        "absent /etc/provisioner/units/tick.env",
        "program /usr/local/lib/provisioner/verify-units (systemd-analyze verify, strict)",
        "units hello.service, tick.service, tick.timer in /etc/systemd/system "
        "(systemd-analyze verify) [controls §11]",
        "service hello.service enabled and running", "service tick.timer enabled and running",
        "service tick.service not enabled (its timer starts it)"]


def test_no_units_still_reads_the_manifest_so_the_last_one_removed_goes() -> None:
    assert labels(make_host()) == [
        "units of the systemd role: manifest /var/lib/provisioner/units/systemd/manifest"]


def test_a_unit_without_environment_has_no_environment_file_left() -> None:
    assert "absent /etc/provisioner/units/hello.env" in labels(make_host({**HELLO,
                                                                          "environment": {}}))


def test_root_and_accounts_not_to_create_get_no_account_step() -> None:
    found = labels(make_host({**HELLO, "user": "root"}, {**TICK, "create_user": False}))
    assert not any(label.startswith("system user") for label in found)


def test_the_environment_file_is_0600_and_marks_the_running_unit_when_it_changes() -> None:
    host = make_host(HELLO)
    step = _step(host, "environment ")
    plan = step.decide(Probed("absent\n"))
    assert plan.action is not None and "chmod 0600" in plan.action
    assert f"{restart_dir('systemd')}/hello.service" in plan.action
    assert step.writes_only is None and step.notify == ("systemd:restart-changed",)


def test_the_check_runs_verify_units_on_every_file_and_calendar() -> None:
    assert machinery.verify_command(specs(HELLO, TICK)) == (
        "/usr/local/lib/provisioner/verify-units /etc/systemd/system/hello.service "
        "/etc/systemd/system/tick.service /etc/systemd/system/tick.timer -- '*:0/5' "
        "'Mon 02:00'")


def _step(host: Host, start: str) -> Step:
    return next(step for step in ROLE.steps(host.for_role(ROLE.template_dir))
                if step.label.startswith(start))


def _probe_units(tmp_path: Path, units: list[UnitSpec]) -> tuple[Step, Probed]:
    step = machinery.units_step(make_host(), units, "systemd", unit_dir=str(tmp_path))
    done = subprocess.run(["sh", "-c", step.probe], capture_output=True, text=True, check=True)
    return step, Probed(done.stdout)


def test_new_unit_files_reload_systemd_and_owe_no_restart(tmp_path: Path) -> None:
    step, probed = _probe_units(tmp_path, specs(HELLO))
    plan = step.decide(probed)
    assert plan.action is not None and "systemctl daemon-reload" in plan.action
    assert plan.notify == ()


def test_a_changed_unit_file_reloads_and_marks_the_unit_if_it_runs(tmp_path: Path) -> None:
    (tmp_path / "hello.service").write_text("old\n")
    step, probed = _probe_units(tmp_path, specs(HELLO))
    plan = step.decide(probed)
    assert plan.action is not None and plan.notify is None
    after = plan.action.split("systemctl daemon-reload\n", 1)[1]
    assert "systemctl is-active --quiet -- hello.service" in after
    assert f"{restart_dir('systemd')}/hello.service" in after


@pytest.mark.skipif(os.geteuid() != 0, reason="the units are root's; only root makes such files")
def test_unit_files_as_desired_need_nothing(tmp_path: Path) -> None:
    spec = unit_spec(HELLO)
    (tmp_path / "hello.service").write_text(render_service(spec, "systemd"))
    os.chmod(tmp_path / "hello.service", 0o644)
    step, probed = _probe_units(tmp_path, [spec])
    plan = step.decide(probed)
    assert plan.action is None and "as desired" in plan.reason


def test_an_owner_that_cannot_name_a_directory_is_a_bug_of_the_calling_role() -> None:
    with pytest.raises(ValueError, match="owner"):
        list(machinery.unit_steps(make_host(), specs(HELLO), "../app"))


def test_the_same_unit_twice_from_a_calling_role_is_refused() -> None:
    with pytest.raises(ValueError, match="hello"):
        list(machinery.unit_steps(make_host(), specs(HELLO) * 2, "app"))


def test_a_spec_built_in_python_without_a_group_runs_in_its_users_group() -> None:
    spec = UnitSpec("app@", "/srv/app/bin/app --port %i", user="app", instances=("8000",))
    assert "Group=app" in render_service(spec, "app").splitlines()
    host = make_host()
    found = [step.label for step in machinery.unit_steps(host, [spec], "app")]
    assert found[0] == "system user app" and found[-1] == \
        "service app@8000.service enabled and running"
