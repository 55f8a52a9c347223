"""systemd units: enabled and running (or not), read with one ``systemctl show`` for all units.

Restarts and reloads are not idempotent operations; they are Handlers that roles declare and
steps notify, so they run once after the role and only when something changed.
"""

from __future__ import annotations

from collections.abc import Sequence

from provisioner.commands import join
from provisioner.host import Host
from provisioner.step import GroupedProbe, Handler, Plan, Probed, ProbeGroup, ProbeUnreadable, Step


def probe_unit(unit: str) -> str:
    return probe_units([unit])


def probe_units(units: Sequence[str]) -> str:
    """One ``systemctl show`` for many units: each systemctl start costs the host ~6 ms."""
    return join("systemctl", "show", "-p", "LoadState", "-p", "UnitFileState", "-p",
                "ActiveState", "--", *units)


def split_units_output(output: str, units: Sequence[str]) -> dict[str, str]:
    """probe_units output -> per unit, probe_unit's text.

    systemctl prints one block per name, in the order given, blank-line separated, even for a
    unit that does not exist or a name it had to escape; a count that differs means the output
    is not what it seems, so no unit gets a result. No output at all (no systemd) is an empty
    text per unit, exactly what the single probe would have read.
    """
    if not output.strip():
        return dict.fromkeys(units, "")
    blocks = output.strip("\n").split("\n\n")
    if len(blocks) != len(units):
        return {}
    return {unit: block + "\n" for unit, block in zip(units, blocks, strict=True)}


#: Unit probes answered together: a role's five services cost one systemctl start, not five.
UNITS = ProbeGroup("units", probe_units, split_units_output)


def parse_unit(output: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in output.splitlines() if "=" in line)


def plan_service(unit: str, state: dict[str, str], enabled: bool | None,
                 running: bool | None) -> Plan:
    """systemctl commands that bring a unit to the desired state; pure."""
    if state.get("LoadState") in (None, "not-found"):
        raise ProbeUnreadable(f"unit {unit} does not exist on the host")
    commands, reasons = [], []
    file_state = state.get("UnitFileState", "")
    # static/alias/indirect units have no install state of their own to switch
    switchable = file_state not in ("static", "alias", "indirect", "generated", "transient")
    if enabled is not None and switchable and (file_state == "enabled") != enabled:
        if file_state == "masked" and enabled:
            commands.append(join("systemctl", "unmask", unit))
        commands.append(join("systemctl", "enable" if enabled else "disable", unit))
        reasons.append(f"{file_state or 'unknown'} -> {'enabled' if enabled else 'disabled'}")
    active = state.get("ActiveState") in ("active", "activating", "reloading")
    if running is not None and active != running:
        commands.append(join("systemctl", "start" if running else "stop", unit))
        reasons.append(f"{state.get('ActiveState')} -> {'running' if running else 'stopped'}")
    if not commands:
        return Plan(f"{file_state}, {state.get('ActiveState')}")
    return Plan(", ".join(reasons), action=" && ".join(commands))


def ensure_service(host: Host, unit: str, *, enabled: bool | None = True,
                   running: bool | None = True, label: str = "") -> Step:
    """A unit enabled/disabled and running/stopped as asked (None = leave as is)."""
    def decide(probed: Probed) -> Plan:
        return plan_service(unit, parse_unit(probed.output), enabled, running)

    return Step(label or f"service {unit}", probe_unit(unit), decide,
                grouped=GroupedProbe(UNITS, unit))


def ensure_masked(host: Host, unit: str, *, label: str = "") -> Step:
    """A unit stopped and masked so nothing can start it (e.g. ssh.socket beside ssh.service)."""
    def decide(probed: Probed) -> Plan:
        state = parse_unit(probed.output)
        if (state.get("UnitFileState") == "masked" and state.get("ActiveState") != "active") \
                or state.get("LoadState") == "not-found":
            return Plan("masked" if state.get("LoadState") != "not-found" else "not installed")
        return Plan(f"{state.get('UnitFileState')} -> masked",
                    action=join("systemctl", "mask", "--now", unit))

    return Step(label or f"masked {unit}", probe_unit(unit), decide,
                grouped=GroupedProbe(UNITS, unit))


def reload_service(unit: str, name: str = "", *, ready: str | None = None,
                   ready_timeout: int = 60) -> Handler:
    """Handler: reload a unit's configuration (``reload-or-restart`` when it cannot reload);
    ``ready``: a check the handler waits for afterwards (step.Handler)."""
    return Handler(name or f"{unit.removesuffix('.service')}:reload",
                   join("systemctl", "reload-or-restart", unit), ready=ready,
                   ready_timeout=ready_timeout)


def restart_service(unit: str, name: str = "", *, supersedes: Sequence[str] = (),
                    ready: str | None = None, ready_timeout: int = 60) -> Handler:
    """Handler: restart a unit; ``supersedes`` the handlers its restart makes unnecessary."""
    return Handler(name or f"{unit.removesuffix('.service')}:restart",
                   join("systemctl", "restart", unit), tuple(supersedes), ready, ready_timeout)


def service_handlers(unit: str, *, ready: str | None = None, ready_timeout: int = 60
                     ) -> tuple[Handler, Handler]:
    """The restart and the reload of one unit, the restart superseding the reload: a run whose
    changes need both restarts the service once (and then waits for ``ready``, if given)."""
    reload = reload_service(unit, ready=ready, ready_timeout=ready_timeout)
    restart = restart_service(unit, supersedes=(reload.name,), ready=ready,
                              ready_timeout=ready_timeout)
    return restart, reload


def daemon_reload() -> str:
    """Shell that makes systemd re-read unit files; appended to the writes of unit files."""
    return "systemctl daemon-reload"
