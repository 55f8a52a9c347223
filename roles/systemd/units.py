"""Unit specs: what one systemd service (and its timer) should be, read from inventory values.

The shape is plain data (UnitSpec, Timer) so that another role (the app role) can build specs in
Python and hand them to machinery.unit_steps; ``read_units`` is the inventory's way in, checking
every field before any host is contacted and naming the unit and the field in its RoleError, the
way roles/nginx/sites.py reads sites. Nothing here renders or talks to a host.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from provisioner.errors import RoleError
from provisioner.secrets.host_store import HostSecret
from provisioner.secrets.values import Secret, holds_secret
from roles.systemd.calendar import calendar_problem

#: What an environment variable may hold: text, or a secret by reference (controller or host).
EnvValue = str | Secret | HostSecret

#: systemd.service(5) Restart= values.
RESTART_POLICIES = ("no", "always", "on-success", "on-failure", "on-abnormal", "on-abort",
                    "on-watchdog")
SERVICE_TYPES = ("simple", "exec", "forking", "oneshot", "notify", "idle")
#: The hardening options of controls.md §11's unit, on for every unit unless a unit (or
#: systemd_hardening_overrides) says otherwise; None removes one.
HARDENING: Mapping[str, str] = {
    "NoNewPrivileges": "yes", "PrivateTmp": "yes", "PrivateDevices": "yes",
    "ProtectSystem": "strict", "ProtectHome": "yes", "ProtectKernelTunables": "yes",
    "ProtectKernelModules": "yes", "ProtectControlGroups": "yes", "RestrictSUIDSGID": "yes",
    "RestrictRealtime": "yes", "RestrictNamespaces": "yes", "LockPersonality": "yes",
    "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6", "CapabilityBoundingSet": "",
    "UMask": "0027",
}
#: A unit's base name (``.service`` is added); a trailing ``@`` makes it a template.
UNIT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,200}@?$")
#: What both systemd (strict mode) and Debian's useradd accept, so neither refuses it later.
USER_NAME = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
OPTION_NAME = re.compile(r"^[A-Z][A-Za-z0-9]*$")
DEPENDENCY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:@-]*\.(service|target|socket|mount|timer|path)$")
INSTANCE = re.compile(r"^[A-Za-z0-9_.:-]+$")
_FIELDS = frozenset({"name", "description", "command", "user", "group", "create_user",
                     "working_directory", "environment", "type", "restart", "restart_sec",
                     "after", "wants", "read_write_paths", "hardening", "service_options",
                     "unit_options", "timer", "instances"})
_TIMER_FIELDS = frozenset({"on_calendar", "persistent", "randomized_delay_sec",
                           "accuracy_sec"})


@dataclass(frozen=True)
class Timer:
    """When a timer starts its service: OnCalendar expressions, catch-up, spread."""

    on_calendar: tuple[str, ...]
    persistent: bool = True
    randomized_delay_sec: int = 0
    #: AccuracySec=: how late systemd may start the job to batch wake-ups (None: its 1 min).
    accuracy_sec: int | None = None


@dataclass(frozen=True)
class UnitSpec:
    """One service: its command and account, environment, restart policy and hardening.

    ``hardening`` is the resolved set of options (HARDENING with the overrides applied). A
    ``timer`` makes it a job its timer starts (the service itself is neither enabled nor
    started); ``instances`` of a template (``name`` ending in ``@``) are enabled and started.
    """

    name: str
    command: str
    description: str = ""
    user: str = "root"
    group: str = ""
    create_user: bool = True
    working_directory: str = "/"
    environment: tuple[tuple[str, EnvValue], ...] = ()
    type: str = "simple"
    restart: str = "on-failure"
    restart_sec: int = 2
    after: tuple[str, ...] = ()
    wants: tuple[str, ...] = ()
    read_write_paths: tuple[str, ...] = ()
    hardening: tuple[tuple[str, str], ...] = tuple(HARDENING.items())
    service_options: tuple[tuple[str, str], ...] = ()
    unit_options: tuple[tuple[str, str], ...] = ()
    timer: Timer | None = None
    instances: tuple[str, ...] = ()

    @property
    def group_name(self) -> str:
        """The unit's group: ``group``, else the user's own (useradd's user group)."""
        return self.group or self.user

    @property
    def service_unit(self) -> str:
        return f"{self.name}.service"

    @property
    def timer_unit(self) -> str | None:
        return f"{self.name}.timer" if self.timer else None

    @property
    def unit_files(self) -> tuple[str, ...]:
        """The files this spec puts in /etc/systemd/system."""
        return (self.service_unit,) + ((f"{self.name}.timer",) if self.timer else ())

    @property
    def started_units(self) -> tuple[str, ...]:
        """What is enabled and kept running: the timer, the instances, or the service."""
        if self.timer:
            return (f"{self.name}.timer",)
        if self.name.endswith("@"):
            return tuple(f"{self.name}{instance}.service" for instance in self.instances)
        return (self.service_unit,)


def read_units(variables: Mapping[str, Any]) -> list[UnitSpec]:
    """systemd_units as UnitSpecs, every field checked (RoleError naming the unit and field)."""
    given = variables.get("systemd_units") or []
    if not isinstance(given, Sequence) or isinstance(given, str):
        raise RoleError("systemd_units must be a list of units (each a mapping with at least "
                        "name and command).")
    overrides = _options("systemd_hardening_overrides", "",
                         variables.get("systemd_hardening_overrides") or {}, allow_none=True)
    specs = [unit_spec(item, index, overrides) for index, item in enumerate(given)]
    seen: set[str] = set()
    for spec in specs:
        if spec.name in seen:
            raise RoleError(f"systemd_units: unit {spec.name!r} is listed twice.")
        seen.add(spec.name)
    return specs


def unit_spec(item: Any, index: int = 0,
              overrides: Mapping[str, str | None] | None = None) -> UnitSpec:
    """One inventory mapping as a UnitSpec; RoleError naming the unit and the field."""
    name = _name(item, index)
    where = f"systemd_units: unit {name!r}"
    _check_fields(where, item, _FIELDS)
    check_secrets_only_in_environment([item])
    timer = _timer(where, item.get("timer"))
    default_type, default_restart = ("oneshot", "no") if timer else ("simple", "on-failure")
    kind = _choice(where, "type", item.get("type", default_type), SERVICE_TYPES)
    restart = _choice(where, "restart", item.get("restart", default_restart), RESTART_POLICIES)
    if kind == "oneshot" and restart not in ("no", "on-failure"):
        raise RoleError(f"{where}: restart {restart!r} is not allowed for type oneshot (systemd "
                        "refuses it); use no or on-failure.")
    user = _account(where, "user", item.get("user", _default_user(name)))
    return UnitSpec(
        name, _command(where, item.get("command")), _text(where, "description",
                                                          item.get("description", "")),
        user, _account(where, "group", item.get("group", user)),
        _flag(where, "create_user", item.get("create_user", True)),
        _absolute(where, "working_directory", item.get("working_directory", "/")),
        _environment(where, item.get("environment") or {}), kind, restart,
        _whole(where, "restart_sec", item.get("restart_sec", 2), 0, 3600),
        _dependencies(where, "after", item.get("after")),
        _dependencies(where, "wants", item.get("wants")),
        tuple(_absolute(where, "read_write_paths", path)
              for path in _list(where, "read_write_paths", item.get("read_write_paths"))),
        _hardening(where, overrides or {}, item.get("hardening") or {}),
        tuple(_options(where, "service_options", item.get("service_options") or {}).items()),
        tuple(_options(where, "unit_options", item.get("unit_options") or {}).items()),
        timer, _instances(where, name, timer, item.get("instances")))


def _name(item: Any, index: int) -> str:
    if not isinstance(item, Mapping) or not isinstance(item.get("name"), str):
        raise RoleError(f"systemd_units[{index}] must be a mapping with a name (the unit's "
                        "name without .service, such as 'hello').")
    name: str = item["name"]
    if name.endswith((".service", ".timer")):
        raise RoleError(f"systemd_units: unit name {name!r} must not end in .service or "
                        f".timer: give {name.rsplit('.', 1)[0]!r}; the role adds the suffixes.")
    if not UNIT_NAME.fullmatch(name):
        raise RoleError(f"systemd_units: unit name {name!r} is not a unit name systemd accepts:"
                        " letters, digits and _ . : - (a trailing @ makes a template).")
    return name


def _check_fields(where: str, item: Mapping[str, Any], allowed: frozenset[str]) -> None:
    for key in sorted(set(item) - allowed, key=str):
        close = difflib.get_close_matches(str(key), sorted(allowed), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else \
            f"; the fields are {', '.join(sorted(allowed))}."
        raise RoleError(f"{where} has an unknown field {key!r}{hint}")


def _default_user(name: str) -> str:
    """The unit's own name when that is a valid user name: a unit runs as its own account."""
    base = name.rstrip("@")
    return base if USER_NAME.fullmatch(base) else ""


def _account(where: str, field: str, value: Any) -> str:
    if not isinstance(value, str) or not USER_NAME.fullmatch(value):
        hint = " (the unit's name is not one, so give one)" if value == "" else ""
        raise RoleError(f"{where}: {field} {value!r} is not a valid user or group name{hint}: "
                        "lower-case letters, digits, _ and -, starting with a letter or _, at "
                        "most 32 characters.")
    return str(value)


def _command(where: str, value: Any) -> str:
    """ExecStart's text: a string as systemd reads it, or a list of arguments quoted for it."""
    if isinstance(value, list) and value and all(isinstance(arg, str) for arg in value):
        value = " ".join(systemd_quote(arg) for arg in value)
    if not isinstance(value, str) or not value.strip():
        raise RoleError(f"{where}: command is required, a command line (text) or a list of "
                        "arguments, e.g. ['/usr/bin/python3', '-m', 'http.server', '8080'].")
    return _single_line(where, "command", value)


def systemd_quote(argument: str) -> str:
    """One argument as an ExecStart word: quoted when it needs it, % and $ kept literal."""
    text = argument.replace("%", "%%").replace("$", "$$")
    if text and not re.search(r"[\s\"'\\;]", text):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def secret_outside_environment(where: str, field: str) -> str:
    """Why a secret reference may stand only under environment."""
    return (f"{where}: {field} holds a secret reference, but a unit file is readable by every "
            "user of the host (and systemctl show prints it to them): give the secret to the "
            "unit under environment (its file is root's, 0600) and refer to it there, e.g. "
            "command: /usr/bin/app --token-from-env TOKEN.")


def check_secrets_only_in_environment(units: Any) -> None:
    """RoleError for a secret reference anywhere in a unit but its environment; for the
    inventory's own values, where a reference is still a Secret (role.validate_login)."""
    for index, item in enumerate(units if isinstance(units, list) else []):
        if not isinstance(item, Mapping):
            continue
        for key, value in item.items():
            if key != "environment" and holds_secret(value):
                name = item.get("name", index)
                raise RoleError(secret_outside_environment(f"systemd_units: unit {name!r}",
                                                           str(key)))


def _single_line(where: str, field: str, value: str) -> str:
    if "\n" in value or "\r" in value or "\0" in value:
        raise RoleError(f"{where}: {field} must be one line (a line break would end the "
                        "setting and start another).")
    return value


def _text(where: str, field: str, value: Any) -> str:
    if not isinstance(value, str):
        raise RoleError(f"{where}: {field} must be text, got {value!r}.")
    return _single_line(where, field, value)


def _flag(where: str, field: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise RoleError(f"{where}: {field} must be true or false, got {value!r}.")
    return value


def _whole(where: str, field: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise RoleError(f"{where}: {field} must be a whole number of seconds from {low} to "
                        f"{high}, got {value!r}.")
    return value


def _choice(where: str, field: str, value: Any, allowed: Sequence[str]) -> str:
    if value not in allowed:
        raise RoleError(f"{where}: {field} {value!r} is not one of systemd's: "
                        f"{', '.join(allowed)}.")
    return str(value)


def _absolute(where: str, field: str, value: Any) -> str:
    if not isinstance(value, str) or not value.startswith("/") or re.search(r"\s", value):
        raise RoleError(f"{where}: {field} {value!r} must be an absolute path without blanks.")
    return value


def _list(where: str, field: str, value: Any) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise RoleError(f"{where}: {field} must be a list, got {value!r}.")
    return value


def _dependencies(where: str, field: str, value: Any) -> tuple[str, ...]:
    units = _list(where, field, value)
    for unit in units:
        if not isinstance(unit, str) or not DEPENDENCY.fullmatch(unit):
            raise RoleError(f"{where}: {field} entry {unit!r} is not a unit name with its "
                            "suffix, such as postgresql.service or network-online.target.")
    return tuple(units)


def _environment(where: str, value: Any) -> tuple[tuple[str, EnvValue], ...]:
    if not isinstance(value, Mapping):
        raise RoleError(f"{where}: environment must be a mapping of NAME: value.")
    pairs: list[tuple[str, EnvValue]] = []
    for key, item in value.items():
        if not isinstance(key, str) or not ENV_NAME.fullmatch(key):
            raise RoleError(f"{where}: environment variable name {key!r} is not one a shell or "
                            "systemd accepts: letters, digits and _, not starting with a digit.")
        if isinstance(item, bool) or not isinstance(item, str | int | float | Secret | HostSecret):
            raise RoleError(f"{where}: environment {key} must be text, a number or a secret "
                            "reference ({secret: host:NAME}), got " + type(item).__name__ + ".")
        text = item if isinstance(item, Secret | HostSecret) else str(item)
        if isinstance(text, str):
            _single_line(where, f"environment {key}", text)
        pairs.append((key, text))
    return tuple(pairs)


def option_value(value: Any) -> str:
    """A YAML value as systemd writes it: yes/no, a list space-joined, anything else as text."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return " ".join(str(item) for item in value)
    return str(value)


def _options(where: str, field: str, value: Any, allow_none: bool = False
             ) -> dict[str, Any]:
    label = f"{where}: {field}" if where else field
    if not isinstance(value, Mapping):
        raise RoleError(f"{label} must be a mapping of systemd option: value.")
    options: dict[str, Any] = {}
    for key, item in value.items():
        if not isinstance(key, str) or not OPTION_NAME.fullmatch(key):
            raise RoleError(f"{label}: {key!r} is not a systemd option name (such as "
                            "ProtectSystem or MemoryMax).")
        if item is None and allow_none:
            options[key] = None
            continue
        if holds_secret(item):
            raise RoleError(secret_outside_environment(where or field, f"{field}.{key}"))
        if item is None or isinstance(item, Mapping):
            raise RoleError(f"{label}: {key} needs a value (yes/no, text, a number or a list).")
        options[key] = _single_line(where or field, key, option_value(item))
    return options


def _hardening(where: str, overrides: Mapping[str, str | None],
               given: Any) -> tuple[tuple[str, str], ...]:
    """HARDENING with the host's overrides and then the unit's applied (None drops one)."""
    merged: dict[str, str | None] = {**HARDENING, **overrides,
                                     **_options(where, "hardening", given, allow_none=True)}
    return tuple((key, value) for key, value in merged.items() if value is not None)


def _timer(where: str, value: Any) -> Timer | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise RoleError(f"{where}: timer must be a mapping with on_calendar.")
    _check_fields(f"{where}: timer", value, _TIMER_FIELDS)
    expressions = value.get("on_calendar")
    expressions = [expressions] if isinstance(expressions, str) else expressions
    if not isinstance(expressions, list) or not expressions:
        raise RoleError(f"{where}: timer.on_calendar is required: an OnCalendar expression "
                        "such as 'daily' or 'Mon..Fri 02:30', or a list of them.")
    for expression in expressions:
        problem = calendar_problem(expression) if isinstance(expression, str) else "not text"
        if problem:
            raise RoleError(f"{where}: timer.on_calendar {expression!r} does not parse: "
                            f"{problem} (systemd.time(7), e.g. daily, *-*-* 02:00, "
                            "Mon..Fri 08:00).")
    return Timer(tuple(expressions), _flag(where, "timer.persistent",
                                           value.get("persistent", True)),
                 _whole(where, "timer.randomized_delay_sec",
                        value.get("randomized_delay_sec", 0), 0, 86400),
                 None if value.get("accuracy_sec") is None else
                 _whole(where, "timer.accuracy_sec", value["accuracy_sec"], 1, 86400))


def _instances(where: str, name: str, timer: Timer | None, value: Any) -> tuple[str, ...]:
    instances = _list(where, "instances", value)
    if instances and not name.endswith("@"):
        raise RoleError(f"{where}: instances need a template unit: name it {name + '@'!r}.")
    if name.endswith("@") and timer is not None:
        raise RoleError(f"{where}: a template unit cannot have a timer here; give each job "
                        "its own unit.")
    for instance in instances:
        if not isinstance(instance, str | int) or not INSTANCE.fullmatch(str(instance)):
            raise RoleError(f"{where}: instance {instance!r} is not a valid instance name "
                            "(letters, digits and _ . : -).")
    return tuple(str(instance) for instance in instances)
