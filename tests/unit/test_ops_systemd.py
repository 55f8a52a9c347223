"""systemd units: ``systemctl show`` parsed, enable/start/mask planned as a pure table."""

from __future__ import annotations

from pathlib import Path

import pytest

from provisioner.ops.systemd import (
    ensure_masked,
    ensure_service,
    parse_unit,
    plan_service,
    probe_unit,
    probe_units,
    reload_service,
    restart_service,
    service_handlers,
    split_units_output,
)
from provisioner.step import Handler, Probed, ProbeUnreadable
from tests.unit.fakes import make_host

FIXTURES = Path(__file__).parent / "fixtures"


def unit(file_state: str, active: str, load: str = "loaded") -> dict[str, str]:
    return {"LoadState": load, "UnitFileState": file_state, "ActiveState": active}


def test_parse_unit_reads_recorded_systemctl_show() -> None:
    parsed = parse_unit((FIXTURES / "systemctl_show_fail2ban.txt").read_text())

    assert parsed == unit("enabled", "active")


def test_parse_unit_keeps_equals_signs_in_values() -> None:
    assert parse_unit("Environment=A=1 B=2\n") == {"Environment": "A=1 B=2"}


#: What systemctl printed on a sandbox machine for nginx, a unit that does not exist, and cron.
THREE_UNITS = ("LoadState=loaded\nActiveState=active\nUnitFileState=enabled\n\n"
               "LoadState=not-found\nActiveState=inactive\nUnitFileState=\n\n"
               "LoadState=loaded\nActiveState=active\nUnitFileState=enabled\n")


def test_probe_units_asks_one_systemctl_for_every_unit() -> None:
    assert probe_units(["nginx.service", "cron.service"]) == (
        "systemctl show -p LoadState -p UnitFileState -p ActiveState -- nginx.service "
        "cron.service")


def test_split_units_output_gives_each_unit_its_own_block_in_order() -> None:
    split = split_units_output(THREE_UNITS, ["nginx.service", "nosuch.service", "cron.service"])

    assert [parse_unit(split[name]) for name in ("nginx.service", "nosuch.service",
                                                 "cron.service")] == [
        unit("enabled", "active"), unit("", "inactive", load="not-found"),
        unit("enabled", "active")]


def test_split_units_output_with_a_block_missing_answers_no_unit() -> None:
    assert split_units_output(THREE_UNITS, ["a.service", "b.service"]) == {}


def test_split_units_output_without_systemd_reads_like_the_single_probe() -> None:
    assert split_units_output("", ["a.service"]) == {"a.service": ""}


def test_ensure_service_probe_travels_in_the_units_group() -> None:
    step = ensure_service(make_host(), "nginx.service")

    assert step.grouped is not None and step.grouped.item == "nginx.service"


def test_probe_unit_only_shows_properties() -> None:
    assert probe_unit("ssh.service") == (
        "systemctl show -p LoadState -p UnitFileState -p ActiveState -- ssh.service")


@pytest.mark.parametrize(
    ("current", "enabled", "running", "reason", "action"),
    [
        (unit("enabled", "active"), True, True, "enabled, active", None),
        (unit("static", "active"), True, True, "static, active", None),
        (unit("alias", "active"), True, True, "alias, active", None),
        (unit("enabled", "activating"), True, True, "enabled, activating", None),
        (unit("enabled", "reloading"), None, True, "enabled, reloading", None),
        (unit("disabled", "inactive"), True, True, "disabled -> enabled, inactive -> running",
         "systemctl enable x.service && systemctl start x.service"),
        (unit("enabled", "failed"), True, True, "failed -> running",
         "systemctl start x.service"),
        (unit("masked", "inactive"), True, None, "masked -> enabled",
         "systemctl unmask x.service && systemctl enable x.service"),
        (unit("enabled", "active"), False, False, "enabled -> disabled, active -> stopped",
         "systemctl disable x.service && systemctl stop x.service"),
        (unit("disabled", "active"), False, None, "disabled, active", None),
        (unit("masked", "inactive"), False, False, "masked, inactive", None),
        (unit("", "active"), True, None, "unknown -> enabled", "systemctl enable x.service"),
        (unit("disabled", "inactive"), None, None, "disabled, inactive", None),
    ],
    ids=["converged", "static-counts-as-enabled", "alias-counts-as-enabled",
         "activating-counts-as-running", "reloading-counts-as-running", "enable-and-start",
         "start-failed", "unmask-before-enable", "disable-and-stop", "disabled-left-running",
         "masked-is-not-enabled", "no-file-state", "leave-as-is"],
)
def test_plan_service(current: dict[str, str], enabled: bool | None, running: bool | None,
                      reason: str, action: str | None) -> None:
    plan = plan_service("x.service", current, enabled, running)

    assert (plan.reason, plan.action) == (reason, action)


@pytest.mark.parametrize("current", [unit("", "inactive", load="not-found"), {}],
                         ids=["not-found", "nothing-read"])
def test_plan_service_for_a_missing_unit_raises_probe_unreadable(
        current: dict[str, str]) -> None:
    with pytest.raises(ProbeUnreadable, match=r"unit x\.service does not exist"):
        plan_service("x.service", current, True, True)


def test_plan_service_does_not_disable_a_static_unit_every_run() -> None:
    plan = plan_service("x.service", unit("static", "inactive"), False, False)

    assert plan.action is None


def test_ensure_service_decides_from_the_recorded_probe() -> None:
    step = ensure_service(make_host(), "fail2ban.service")

    plan = step.decide(Probed((FIXTURES / "systemctl_show_fail2ban.txt").read_text()))

    assert (step.probe, plan.action) == (probe_unit("fail2ban.service"), None)


@pytest.mark.parametrize(
    ("output", "reason", "action"),
    [
        ("LoadState=masked\nUnitFileState=masked\nActiveState=inactive\n", "masked", None),
        ("LoadState=not-found\nUnitFileState=\nActiveState=inactive\n", "not installed", None),
        ("LoadState=loaded\nUnitFileState=enabled\nActiveState=active\n",
         "enabled -> masked", "systemctl mask --now ssh.socket"),
        ("LoadState=masked\nUnitFileState=masked\nActiveState=active\n",
         "masked -> masked", "systemctl mask --now ssh.socket"),
    ],
    ids=["masked", "not-installed", "enabled", "masked-but-still-running"],
)
def test_ensure_masked(output: str, reason: str, action: str | None) -> None:
    plan = ensure_masked(make_host(), "ssh.socket").decide(Probed(output))

    assert (plan.reason, plan.action) == (reason, action)


@pytest.mark.parametrize(
    ("handler", "expected"),
    [
        (reload_service("fail2ban.service"),
         Handler("fail2ban:reload", "systemctl reload-or-restart fail2ban.service")),
        (restart_service("ssh.service"), Handler("ssh:restart", "systemctl restart ssh.service")),
        (restart_service("ssh.service", name="sshd:restart"),
         Handler("sshd:restart", "systemctl restart ssh.service")),
    ],
    ids=["reload", "restart", "named"],
)
def test_service_handlers(handler: Handler, expected: Handler) -> None:
    assert handler == expected


def test_a_units_restart_and_reload_come_as_a_pair_the_restart_superseding_the_reload() -> None:
    restart, reload = service_handlers("postgresql@15-main.service", ready="pg_isready -q")
    assert restart.name == "postgresql@15-main:restart"
    assert restart.supersedes == ("postgresql@15-main:reload",) == (reload.name,)
    assert restart.ready == reload.ready == "pg_isready -q"


def test_a_restart_names_what_it_supersedes_and_what_it_waits_for() -> None:
    handler = restart_service("nginx.service", supersedes=("nginx:reload",),
                              ready="curl -fsS http://127.0.0.1/health", ready_timeout=20)
    assert (handler.supersedes, handler.ready, handler.ready_timeout) == (
        ("nginx:reload",), "curl -fsS http://127.0.0.1/health", 20)
