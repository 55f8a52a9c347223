"""Unit files as text, from UnitSpecs; pure, so each line is unit-tested.

Each file starts with a header naming who manages it (the machinery's ownership check reads that
first line on the host). Secrets never appear in a unit: the environment goes to its own 0600
file (environment_file), which the unit names with EnvironmentFile=.
"""

from __future__ import annotations

from collections.abc import Iterable

from provisioner.content.templates import MANAGED_BANNER
from roles.systemd.units import Timer, UnitSpec

#: Every unit file this machinery writes starts with this.
HEADER_START = "# Managed by provisioner"
#: Where a unit's environment file goes: root's, 0600, in a 0700 directory (systemd reads it
#: as root before it drops to the unit's user, so the user never needs to read it).
ENVIRONMENT_DIR = "/etc/provisioner/units"


def header(owner: str) -> str:
    return f"# {MANAGED_BANNER} Written by the {owner} role (roles/systemd machinery).\n"


def environment_file(spec: UnitSpec) -> str | None:
    return f"{ENVIRONMENT_DIR}/{spec.name}.env" if spec.environment else None


def render_service(spec: UnitSpec, owner: str) -> str:
    """The .service file: [Unit], [Service] with the hardening, [Install] unless a timer runs it."""
    unit = [("Description", spec.description or f"{spec.name} ({owner} role)"),
            ("After", " ".join(("network-online.target", *spec.after))),
            ("Wants", " ".join(("network-online.target", *spec.wants))), *spec.unit_options]
    service = [("Type", spec.type), ("User", spec.user), ("Group", spec.group_name),
               ("WorkingDirectory", spec.working_directory)]
    path = environment_file(spec)
    if path:
        service.append(("EnvironmentFile", path))
    service += [("ExecStart", spec.command), ("Restart", spec.restart)]
    if spec.restart != "no":
        service.append(("RestartSec", str(spec.restart_sec)))
    service.append(("TimeoutStopSec", "30"))
    hardening = list(spec.hardening)
    if spec.read_write_paths:
        hardening.append(("ReadWritePaths", " ".join(spec.read_write_paths)))
    text = header(owner) + _section("Unit", unit) + "\n" + _section("Service", service)
    text += "# hardening [controls §11]\n" + _lines(hardening) + _lines(spec.service_options)
    if spec.timer is None:
        text += "\n" + _section("Install", [("WantedBy", "multi-user.target")])
    return text


def render_timer(spec: UnitSpec, owner: str) -> str:
    """The .timer file that starts the spec's service on its calendar."""
    timer: Timer | None = spec.timer
    if timer is None:
        raise ValueError(f"unit {spec.name} has no timer")
    options = [("OnCalendar", expression) for expression in timer.on_calendar]
    options.append(("Persistent", "true" if timer.persistent else "false"))
    if timer.randomized_delay_sec:
        options.append(("RandomizedDelaySec", str(timer.randomized_delay_sec)))
    if timer.accuracy_sec is not None:
        options.append(("AccuracySec", str(timer.accuracy_sec)))
    options.append(("Unit", spec.service_unit))
    return (header(owner)
            + _section("Unit", [("Description", f"{spec.name} on its calendar ({owner} role)")])
            + "\n" + _section("Timer", options) + "\n"
            + _section("Install", [("WantedBy", "timers.target")]))


def unit_files(spec: UnitSpec, owner: str) -> dict[str, str]:
    """File name in /etc/systemd/system -> content, for every file of the spec."""
    files = {spec.service_unit: render_service(spec, owner)}
    if spec.timer is not None:
        files[f"{spec.name}.timer"] = render_timer(spec, owner)
    return files


def _section(name: str, options: Iterable[tuple[str, str]]) -> str:
    return f"[{name}]\n" + _lines(options)


def _lines(options: Iterable[tuple[str, str]]) -> str:
    return "".join(f"{key}={value}\n" for key, value in options)
