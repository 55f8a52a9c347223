"""systemd spec: each inventory unit is written by this role, verified by systemd, enabled and
running as its user with its hardening in effect; each timer is scheduled; each environment file
is root's 0600 and holds what the inventory says (host secrets read on the host); nothing stale
remains of the units this role wrote."""

from __future__ import annotations

from typing import Any

from provisioner.secrets.host_store import STORE_DIR, HostSecret
from roles.systemd.manifest import UNIT_DIR, entries, manifest_path
from roles.systemd.render import environment_file, header
from roles.systemd.role import OWNER
from roles.systemd.units import HARDENING, UnitSpec, read_units


def _units(role_vars: dict[str, Any]) -> list[UnitSpec]:
    """read_units over the JSON verify hands over, where a host secret is {secret: host:NAME}."""
    def revive(value: Any) -> Any:
        if isinstance(value, dict) and set(value) == {"secret"} and \
                str(value["secret"]).startswith("host:"):
            return HostSecret(str(value["secret"]).removeprefix("host:"))
        if isinstance(value, dict):
            return {key: revive(item) for key, item in value.items()}
        if isinstance(value, list):
            return [revive(item) for item in value]
        return value

    return read_units({key: revive(value) for key, value in role_vars.items()
                       if key.startswith("systemd_")})


def _show(host: Any, unit: str, *properties: str) -> dict[str, str]:
    flags = " ".join(f"-p {name}" for name in properties)
    output = host.check_output(f"systemctl show {flags} -- {unit}")
    return dict(line.split("=", 1) for line in output.splitlines() if "=" in line)


def test_each_unit_file_is_ours_and_passes_systemd_analyze_verify(
        host: Any, role_vars: dict[str, Any]) -> None:
    for spec in _units(role_vars):
        for name in spec.unit_files:
            unit = host.file(f"{UNIT_DIR}/{name}")
            assert unit.content_string.startswith(header(OWNER))
            verified = host.run(f"systemd-analyze verify -- {UNIT_DIR}/{name}")
            assert verified.rc == 0, verified.stderr
            assert f"{UNIT_DIR}/{name}:" not in verified.stderr


def test_each_unit_is_enabled_and_running(host: Any, role_vars: dict[str, Any]) -> None:
    for spec in _units(role_vars):
        for unit in spec.started_units:
            state = _show(host, unit, "UnitFileState", "ActiveState")
            assert state == {"UnitFileState": "enabled", "ActiveState": "active"}, unit


def test_each_service_runs_as_its_user_with_its_hardening(host: Any,
                                                         role_vars: dict[str, Any]) -> None:
    """systemd's view of each §11 option the unit has (words in any order: it sorts address
    families), and the kernel's: the main process's user and its no_new_privs flag."""
    for spec in _units(role_vars):
        if spec.timer or spec.name.endswith("@"):
            continue
        options = {key: value for key, value in spec.hardening if key in HARDENING}
        shown = _show(host, spec.service_unit, "User", "Group", "MainPID", *options)
        assert (shown["User"], shown["Group"]) == (spec.user, spec.group_name)
        for key, value in options.items():
            assert sorted(shown[key].split()) == sorted(value.split()), (spec.name, key)
        status = host.file(f"/proc/{shown['MainPID']}/status").content_string
        uid = host.user(spec.user).uid
        assert f"Uid:\t{uid}\t{uid}\t{uid}\t{uid}" in status
        assert ("NoNewPrivs:\t1" in status) == (options.get("NoNewPrivileges") == "yes")


def test_each_timer_is_scheduled(host: Any, role_vars: dict[str, Any]) -> None:
    for spec in _units(role_vars):
        if spec.timer:
            state = _show(host, f"{spec.name}.timer", "ActiveState", "NextElapseUSecRealtime")
            assert state["ActiveState"] == "active" and state["NextElapseUSecRealtime"]


def test_each_timers_calendar_parses_on_the_host(host: Any, role_vars: dict[str, Any]) -> None:
    """The host's systemd reads every OnCalendar as the controller's check did."""
    for spec in _units(role_vars):
        for expression in spec.timer.on_calendar if spec.timer else ():
            parsed = host.run("systemd-analyze calendar -- %s", expression)
            assert parsed.rc == 0, parsed.stderr


def test_each_environment_file_is_private_and_holds_the_inventorys_values(
        host: Any, role_vars: dict[str, Any]) -> None:
    for spec in _units(role_vars):
        path = environment_file(spec)
        if path is None:
            continue
        env = host.file(path)
        assert (env.user, env.group, env.mode) == ("root", "root", 0o600)
        text = env.content_string
        for key, value in spec.environment:
            if isinstance(value, HostSecret):
                value = host.file(f"{STORE_DIR}/{value.name}").content_string.strip()
            assert f'{key}="{_escaped(str(value))}"' in text.splitlines()


def _escaped(value: str) -> str:
    return "".join("\\" + char if char in '\\"$`' else char for char in value)


def test_nothing_stale_remains_of_this_roles_units(host: Any,
                                                  role_vars: dict[str, Any]) -> None:
    recorded = host.file(manifest_path(OWNER))
    wanted = list(entries(_units(role_vars)))
    assert (recorded.content_string.split() if recorded.exists else []) == wanted
