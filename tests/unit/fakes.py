"""The unit tests' one set of fakes: a host that is never contacted, a local shell in place of
SSH, a listener that hears nothing. Fakes stand in for the network only; the shell is real."""

from __future__ import annotations

import grp
import os
import pwd
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from provisioner.change import Change
from provisioner.content.roles import Role
from provisioner.facts import Facts
from provisioner.host import Host
from provisioner.inventory.hosts import HostConfig, SshSettings
from provisioner.run.results import HostResult
from provisioner.run.walk import HostWalk, RoleSteps
from provisioner.step import Handler, Step
from provisioner.transport.remote import Result, StderrLines

DEBIAN12_FACTS = Facts("debian", "12", "bookworm", (), 2, 2 << 30, (), "systemd", "kvm", "web1",
                       "6.1.0-28-amd64", "amd64", False, (9, 2))

#: Who runs the unit tests: the owner and group of the files they make.
LOCAL_USER = pwd.getpwuid(os.getuid()).pw_name
LOCAL_GROUP = grp.getgrgid(os.getgid()).gr_name

SSH_SETTINGS = SshSettings(identity_file=None, known_hosts=Path("/dev/null"),
                           trust_on_first_use=False, jump_host=None, connect_timeout=10.0,
                           command_timeout=60.0, sudo_password=None)


def host_config(name: str = "web1", address: str = "192.0.2.10", *, user: str = "root",
                port: int = 22, groups: Sequence[str] = (), roles: Sequence[str] = ("ufw",),
                variables: Mapping[str, Any] | None = None, **ssh: Any) -> HostConfig:
    """A host as the inventory would describe it; ``ssh`` replaces SshSettings fields."""
    return HostConfig(name, address, port, user, tuple(groups), tuple(roles),
                      dict(variables or {}), replace(SSH_SETTINGS, **ssh))


def make_host(*, show_diff: bool = False, check: bool = False,
              variables: Mapping[str, Any] | None = None,
              facts: Facts | Callable[[], Facts] = DEBIAN12_FACTS,
              config: HostConfig | None = None) -> Host:
    """web1 at 192.0.2.10, logged in as root, facts of a Debian 12 VM with OpenSSH 9.2 (or
    ``facts``: a function is called when the facts are first read)."""
    gather = facts if callable(facts) else (lambda: facts)
    return Host(config or host_config(), dict(variables or {}), gather_facts=gather,
                show_diff=show_diff, check=check)


def no_facts() -> Facts:
    raise AssertionError("facts were not needed")


class LocalShell:
    """Runs each script with the local sh, counting round trips like the SSH connection does."""

    reused = False

    def __init__(self) -> None:
        self.round_trips = 0
        self.scripts: list[str] = []

    def run_script(self, script: str, timeout: float | None = None,
                   stderr_lines: StderrLines | None = None) -> Result:
        self.round_trips += 1
        self.scripts.append(script)
        done = subprocess.run(["sh", "-s"], input=script, capture_output=True, text=True,
                              check=False)
        for line in done.stderr.splitlines() if stderr_lines is not None else ():
            stderr_lines(line)
        return Result(done.stdout, done.stderr, done.returncode)

    def close(self) -> None:
        pass


class Quiet:
    """A Listener that hears nothing."""

    def host_started(self, host: str) -> None: ...
    def action_started(self, host: str, label: str) -> None: ...
    def action_progress(self, host: str, label: str, text: str) -> None: ...
    def step_finished(self, host: str, change: Change) -> None: ...
    def host_finished(self, result: HostResult) -> None: ...


def role_of(steps: Sequence[Step], handlers: Sequence[Handler] = (), name: str = "test"
              ) -> Role:
    """A role with these steps and handlers and nothing on disk."""
    return Role(name, Path("/nonexistent"), {}, {h.name: h for h in handlers},
                lambda host: steps)


def walk_roles(roles: Sequence[Role], *, check: bool = False, shell: LocalShell | None = None,
               host: Host | None = None) -> tuple[list[Change], LocalShell]:
    """Walk these roles on the local shell with a host that needs no facts."""
    shell = shell or LocalShell()
    host = host or make_host(check=check, facts=no_facts,
                             config=host_config("local", "127.0.0.1", roles=("test",)))
    changes: list[Change] = []
    plan = [RoleSteps(role, list(role.steps(host))) for role in roles]
    HostWalk(host, shell, plan, changes.append,  # type: ignore[arg-type]
             lambda label: None).run()
    return changes, shell


def never_shown(text: str, error: bool) -> None:
    """A cli's show callback for a case that must print nothing."""
    raise AssertionError(f"nothing should be shown, got {text!r}")
