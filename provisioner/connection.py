"""One SSH connection per host for the whole run, with safe host-key handling.

Fabric builds the connection (jump hosts, timeouts), but fabric trusts any host key by default
(AutoAddPolicy, fabric#2071); here known_hosts is loaded and unknown keys are rejected unless the
inventory opts in to trust-on-first-use, which records the key. Scripts travel on a raw paramiko
channel with stdin closed after sending, because fabric's in_stream waits ~28 s for end-of-input
(sandbox-notes.md). Network exceptions are caught here and nowhere else.
"""

from __future__ import annotations

import select
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import paramiko

from provisioner.errors import ConnectError
from provisioner.inventory import HostConfig

if TYPE_CHECKING:
    from fabric import Connection as FabricConnection


@dataclass(frozen=True)
class Result:
    stdout: str
    stderr: str
    exit_code: int


class _RecordOnFirstUse(paramiko.MissingHostKeyPolicy):
    """Trust-on-first-use: accept an unknown key and append it to the known_hosts file.

    A key that *differs* from a recorded one never reaches a policy: paramiko raises
    BadHostKeyException first, so this cannot be used to accept a changed key.
    """

    def __init__(self, known_hosts: Path) -> None:
        self.known_hosts = known_hosts

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str,
                         key: paramiko.PKey) -> None:
        client.get_host_keys().add(hostname, key.get_name(), key)
        self.known_hosts.parent.mkdir(parents=True, exist_ok=True)
        with self.known_hosts.open("a", encoding="ascii") as stream:
            stream.write(f"{hostname} {key.get_name()} {key.get_base64()}\n")


class Connection:
    """An open SSH session to one host that runs shell scripts as root and counts round trips."""

    def __init__(self, config: HostConfig) -> None:
        self.config = config
        self.round_trips = 0
        self._fabric = _open(config)

    def run_script(self, script: str, timeout: float | None = None) -> Result:
        """Run a POSIX sh script as root (sudo for other users); one round trip."""
        transport = self._fabric.client.get_transport()
        if transport is None or not transport.is_active():
            raise ConnectError(f"The SSH connection to {self._name()} was lost. "
                               "Check the host and run again; nothing further was sent.")
        self.round_trips += 1
        try:
            channel = transport.open_session()
            channel.exec_command(self._shell_command())
            channel.sendall(self._stdin_prefix() + script.encode())
            channel.shutdown_write()
            result = _collect(channel, timeout or self.config.ssh.command_timeout)
        except (OSError, paramiko.SSHException) as error:
            raise ConnectError(f"The SSH connection to {self._name()} failed while running a "
                               f"command: {error}. Check the host and run again.") from None
        except TimeoutError as error:
            raise ConnectError(f"A command on {self._name()} timed out ({error}); raise "
                               "ssh.command_timeout in the inventory if it needs longer.") from None
        self._refuse_sudo_failure(result)
        return result

    def _refuse_sudo_failure(self, result: Result) -> None:
        """sudo refusing means the script never ran: its empty output must not pass for state."""
        if self.config.user == "root" or result.exit_code != 1 or result.stdout:
            return
        if "sudo" in result.stderr or "password" in result.stderr:
            hint = ("check ssh.sudo_password" if self.config.ssh.sudo_password else
                    "give the user passwordless sudo or set ssh.sudo_password")
            raise ConnectError(f"sudo on {self._name()} refused to run commands as root for "
                               f"{self.config.user!r}: {result.stderr.strip()[-300:]}; {hint}.")

    def close(self) -> None:
        self._fabric.close()

    def _shell_command(self) -> str:
        if self.config.user == "root":
            return "/bin/sh -s"
        if self.config.ssh.sudo_password is not None:
            return "sudo -S -p '' -H /bin/sh -s"
        return "sudo -n -H /bin/sh -s"

    def _stdin_prefix(self) -> bytes:
        password = self.config.ssh.sudo_password
        if self.config.user == "root" or password is None:
            return b""
        return (password.reveal() + "\n").encode()

    def _name(self) -> str:
        return f"{self.config.name} ({self.config.address}:{self.config.port})"


def _collect(channel: paramiko.Channel, timeout: float) -> Result:
    """Read stdout and stderr together until exit, so neither pipe can fill and deadlock."""
    deadline = time.monotonic() + timeout
    out, err = bytearray(), bytearray()
    while True:
        while channel.recv_ready():
            out += channel.recv(65536)
        while channel.recv_stderr_ready():
            err += channel.recv_stderr(65536)
        if channel.exit_status_ready() and not channel.recv_ready() and \
                not channel.recv_stderr_ready():
            break
        if time.monotonic() > deadline:
            channel.close()
            raise TimeoutError(f"command still running after {timeout:.0f} s")
        select.select([channel], [], [], 0.5)
    code = channel.recv_exit_status()
    channel.close()
    return Result(out.decode("utf-8", "replace"), err.decode("utf-8", "replace"), code)


def open_connection(config: HostConfig) -> Connection:
    """Connect to a host, or raise ConnectError saying why and what to do."""
    return Connection(config)


def _open(config: HostConfig) -> FabricConnection:
    from fabric import Config
    from fabric import Connection as FabricConnection

    settings = config.ssh
    connect_kwargs: dict[str, object] = {"banner_timeout": settings.connect_timeout,
                                         "auth_timeout": settings.connect_timeout}
    if settings.identity_file is not None:
        connect_kwargs.update(key_filename=[str(settings.identity_file)], look_for_keys=False)
    fabric_config = Config(overrides={"load_ssh_configs": False})
    gateway = _gateway(config, fabric_config, dict(connect_kwargs)) if settings.jump_host else None
    if gateway is None:
        connect_kwargs["sock"] = _tcp_socket(config.name, config.address, config.port,
                                             settings.connect_timeout)
    connection = FabricConnection(
        config.address, user=config.user, port=config.port, config=fabric_config,
        connect_timeout=int(settings.connect_timeout), connect_kwargs=connect_kwargs,
        gateway=gateway,
    )
    _pin_host_keys(connection.client, settings.known_hosts, settings.trust_on_first_use)
    try:
        connection.open()
    except paramiko.BadHostKeyException as error:
        raise ConnectError(_bad_key_message(config, error)) from None
    except paramiko.SSHException as error:
        raise ConnectError(_ssh_error_message(config, error)) from None
    except (TimeoutError, OSError, EOFError) as error:
        raise ConnectError(f"Cannot reach {config.name} at {config.address}:{config.port}: "
                           f"{error}. Check that the host is up, the address and port in the "
                           "inventory are right, and no firewall is in the way.") from None
    return connection


def _tcp_socket(name: str, address: str, port: int, timeout: float) -> socket.socket:
    """A TCP connection with Nagle's algorithm off.

    Every SSH request is a small packet that waits for an answer; with Nagle on, each one can sit
    out the peer's delayed ACK (about 40 ms here), which made every round trip ~5x slower.
    """
    try:
        sock = socket.create_connection((address, port), timeout=timeout)
    except OSError as error:
        raise ConnectError(f"Cannot reach {name} at {address}:{port}: "
                           f"{error}. Check that the host is up, the address and port in the "
                           "inventory are right, and no firewall is in the way.") from None
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _pin_host_keys(client: paramiko.SSHClient, known_hosts: Path, trust_first: bool) -> None:
    if known_hosts.is_file():
        client.load_host_keys(str(known_hosts))
    policy = _RecordOnFirstUse(known_hosts) if trust_first else paramiko.RejectPolicy()
    client.set_missing_host_key_policy(policy)


def _gateway(config: HostConfig, fabric_config: object,
             connect_kwargs: dict[str, object]) -> FabricConnection:
    """The jump host ("user@host:port"), reached with the same key and known_hosts policy."""
    from fabric import Connection as FabricConnection

    jump = FabricConnection(str(config.ssh.jump_host), config=fabric_config,
                            connect_timeout=int(config.ssh.connect_timeout),
                            connect_kwargs=connect_kwargs)
    jump.connect_kwargs["sock"] = _tcp_socket(f"jump host {jump.host}", jump.host, jump.port,
                                              config.ssh.connect_timeout)
    _pin_host_keys(jump.client, config.ssh.known_hosts, config.ssh.trust_on_first_use)
    return jump


def _bad_key_message(config: HostConfig, error: paramiko.BadHostKeyException) -> str:
    return (f"The host key of {config.name} ({config.address}) does not match the one recorded "
            f"in {config.ssh.known_hosts} (got {error.key.get_name()} "
            f"{error.key.get_fingerprint().hex()}). This may be an attack or a reinstalled "
            "host; verify the new key out of band, then remove the old line from known_hosts.")


def _ssh_error_message(config: HostConfig, error: paramiko.SSHException) -> str:
    text = str(error)
    if "not found in known_hosts" in text:
        return (f"{config.name} ({config.address}) is not in {config.ssh.known_hosts}, so its "
                "identity cannot be verified. Add its key (ssh-keyscan, checked out of band), or "
                "set ssh.trust_on_first_use: true for this host to record it on first contact.")
    if isinstance(error, paramiko.AuthenticationException):
        return (f"{config.name} ({config.address}) refused login as {config.user!r}: {text}. "
                "Check the user and ssh.identity_file in the inventory.")
    return f"SSH to {config.name} ({config.address}:{config.port}) failed: {text}."
