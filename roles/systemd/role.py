"""systemd: the inventory's own services and timers, hardened, verified before they go live.

Implements issue 18's systemd role and controls.md §11: each entry of ``systemd_units`` becomes
a unit in /etc/systemd/system (a header saying who manages it) running its command as its own
system user, with its environment in a 0600 file (secrets by reference: a host secret is read on
the host in the step's probe), its restart policy, and §11's hardening options on unless the
unit (or ``systemd_hardening_overrides``) turns one off. A unit with a ``timer`` is a job its
timer starts on an OnCalendar schedule.

The work is machinery.py's, which the app role calls with its own units: accounts, the manifest
(a unit removed from the inventory is stopped, disabled and removed; a unit this role did not
write is never touched), environment files, all unit files as one config set that goes live
only once ``systemd-analyze verify`` accepts the staged tree, daemon-reload only when a unit
changed, every unit enabled and started, and a restart only for a running unit whose file or
environment changed.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from provisioner.host import Host
from provisioner.inventory.hosts import HostConfig
from provisioner.step import Handler, Step
from roles.systemd import machinery
from roles.systemd.units import check_secrets_only_in_environment, read_units

OWNER = "systemd"
HANDLERS: tuple[Handler, ...] = (machinery.restart_handler(OWNER),)
TEMPLATE_ARGUMENTS = machinery.TEMPLATE_ARGUMENTS


def steps(host: Host) -> Iterator[Step]:
    yield from machinery.unit_steps(host, read_units(host.vars), OWNER)


def validate(variables: Mapping[str, Any]) -> None:
    """Refuse, before contact, a unit systemd would refuse or misread: an unknown field, a user
    that is not a valid name, a restart policy or type that is not systemd's, an OnCalendar
    that does not parse, a command or value spanning lines."""
    read_units(variables)


def validate_login(config: HostConfig, variables: Mapping[str, Any]) -> None:
    """Refuse a secret reference anywhere in a unit but its environment. Not about the login:
    the one hook that sees the inventory's own values, where a reference is still a Secret
    (by validate's time it is its value, which would go into a unit file every user reads)."""
    check_secrets_only_in_environment(config.vars.get("systemd_units"))
