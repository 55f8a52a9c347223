"""What the engine needs from a connection to a host, whichever way the connection travels.

A run reaches a host over its own SSH login (connection.py) or through the login a connection
keeper holds open between runs (kept_logins.py). Both run a script as root and count their
round trips; the sudo wrapping lives here so that both wrap, and refuse, alike.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from provisioner.errors import ConnectError
from provisioner.inventory.hosts import HostConfig

#: Hears each complete line a script writes to stderr, as it arrives (progress of a long
#: action, such as a wait for the dpkg lock, shown while the run waits).
StderrLines = Callable[[str], None]


@dataclass(frozen=True)
class Result:
    stdout: str
    stderr: str
    exit_code: int


class RemoteShell(Protocol):
    """A host that runs shell scripts as root, one round trip each."""

    round_trips: int
    #: True when the run used a login an earlier run left open, False for a new login.
    reused: bool

    def run_script(self, script: str, timeout: float | None = None,
                   stderr_lines: StderrLines | None = None) -> Result:
        """``stderr_lines`` hears each line the script writes to stderr as it arrives."""
        ...

    def close(self) -> None: ...


def root_shell_command(config: HostConfig) -> str:
    """The remote command that reads a script on stdin and runs it as root."""
    if config.user == "root":
        return "/bin/sh -s"
    if config.ssh.sudo_password is not None:
        return "sudo -S -p '' -H /bin/sh -s"
    return "sudo -n -H /bin/sh -s"


def may_keep_root_shell(config: HostConfig) -> bool:
    """Whether a keeper may hold a root shell open for this host (root_shell.py): not when sudo
    needs a password, which a kept root shell would let any process of the user skip."""
    return config.user == "root" or config.ssh.sudo_password is None


def root_shell_input(config: HostConfig, script: str) -> bytes:
    """The script as the root shell's stdin, after sudo's password when sudo needs one."""
    password = config.ssh.sudo_password
    if config.user == "root" or password is None:
        return script.encode()
    return (password.reveal() + "\n" + script).encode()


def refuse_sudo_failure(config: HostConfig, result: Result) -> None:
    """sudo refusing means the script never ran: its empty output must not pass for state."""
    if config.user == "root" or result.exit_code != 1 or result.stdout:
        return
    if "sudo" in result.stderr or "password" in result.stderr:
        hint = ("check ssh.sudo_password" if config.ssh.sudo_password else
                "give the user passwordless sudo or set ssh.sudo_password")
        raise ConnectError(f"sudo on {host_label(config)} refused to run commands as root for "
                           f"{config.user!r}: {result.stderr.strip()[-300:]}; {hint}.")


def host_label(config: HostConfig) -> str:
    return f"{config.name} ({config.address}:{config.port})"


def timed_out_message(host: str, error: BaseException) -> str:
    return (f"A command on {host} timed out ({error}); the login was reset so nothing still "
            "queued on it can reach the host later. Raise ssh.command_timeout in the inventory "
            "if the command needs longer.")


def lost_message(host: str) -> str:
    return (f"The SSH connection to {host} went dead while a command ran (the host stopped "
            "acknowledging: it is down, or a firewall or ban now drops this controller); whether "
            "the command finished is unknown. Check the host and run again.")
