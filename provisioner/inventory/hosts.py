"""What an inventory describes, as the rest of the tool sees it: hosts, their SSH settings, groups.

Plain frozen data built by loader.py; nothing here reads a file or contacts a host.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from provisioner.errors import ProvisionerError
from provisioner.secrets.values import Secret

#: Keys whose value is always a secret: a reference is required, plain text is refused.
SECRET_KEYS = frozenset({"sudo_password"})


SECRET_REFERENCE_REQUIRED = (
    "this is a secret, so it must be a reference, not the value in plain text: write "
    "{secret: env:NAME} (read from the environment variable NAME) or {secret: file:PATH} "
    "(read from a file; a relative PATH is relative to the inventory file)")


@dataclass(frozen=True)
class SshSettings:
    """Effective SSH settings for one host, paths resolved against the inventory's directory."""

    identity_file: Path | None
    known_hosts: Path
    trust_on_first_use: bool
    jump_host: str | None
    connect_timeout: float
    command_timeout: float
    sudo_password: Secret | None
    #: Seconds a login stays open after a run for the next run to reuse; 0 = a new login each run.
    control_persist: float = 300.0


@dataclass(frozen=True)
class HostConfig:
    """One host as the inventory describes it, with variables merged up to host level."""

    name: str
    address: str
    port: int
    user: str
    groups: tuple[str, ...]
    roles: tuple[str, ...]
    vars: Mapping[str, Any]
    ssh: SshSettings


@dataclass(frozen=True)
class Inventory:
    path: Path
    hosts: dict[str, HostConfig]
    groups: dict[str, tuple[str, ...]] = field(default_factory=dict)  # name -> its roles
    #: Per host, where each variable got the value it has: "defaults.vars", "groups.G.vars",
    #: "hosts.H.vars" or "--set", so a wrong value can be named where it was written.
    variable_origins: dict[str, dict[str, str]] = field(default_factory=dict)
    #: Every variable name the file sets in any of its vars: sections.
    file_variables: frozenset[str] = frozenset()
    #: The --set assignments merged in, by name.
    cli_variables: Mapping[str, Any] = field(default_factory=dict)
    #: Hosts whose secret references could not be read (their values are empty stand-ins):
    #: selecting one raises its error.
    unreadable_secrets: Mapping[str, ProvisionerError] = field(default_factory=dict)

    def select(self, hosts: str = "", group: str = "") -> list[HostConfig]:
        """Hosts named (comma-separated) and/or members of a group; all hosts when neither.

        A name that is not in the file is a mistake on the command line, not in the file, so
        it is reported as one (ProvisionerError, exit 2)."""
        chosen = self._chosen(hosts, group)
        for config in chosen:
            if config.name in self.unreadable_secrets:
                raise self.unreadable_secrets[config.name]
        return chosen

    def _chosen(self, hosts: str, group: str) -> list[HostConfig]:
        if not hosts and not group:
            return list(self.hosts.values())
        chosen: dict[str, HostConfig] = {}
        for name in filter(None, (part.strip() for part in hosts.split(","))):
            if name not in self.hosts:
                raise ProvisionerError(self._not_found("--host", name, "host", self.hosts))
            chosen[name] = self.hosts[name]
        if group:
            if group not in self.groups:
                raise ProvisionerError(self._not_found("--group", group, "group", self.groups))
            chosen.update({h.name: h for h in self.hosts.values() if group in h.groups})
        return list(chosen.values())

    def _not_found(self, flag: str, name: str, kind: str, known: Iterable[str]) -> str:
        import difflib

        names = sorted(known)
        close = difflib.get_close_matches(name, names, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        return (f"{flag} {name}: no such {kind} in {self.path}; {kind}s: "
                f"{', '.join(names) or 'none'}.{hint}")
