"""A fresh SSH login to a host, used for the whole run, with safe host-key handling.

paramiko logs in (fabric's gateway when there is a jump host; fabric alone would trust any host
key, AutoAddPolicy, fabric#2071); known_hosts is loaded and unknown keys are rejected unless the
inventory opts in to trust-on-first-use, which records the key. Scripts travel on a raw paramiko
channel with stdin closed after sending, because fabric's in_stream waits ~28 s for end-of-input
(sandbox-notes.md). Network exceptions are caught here and nowhere else.

A login that goes dead (the host vanished, or a ban now drops this controller) is found within
``DEAD_LINK_SECONDS``: the kernel aborts a TCP connection whose data stays unacknowledged that
long, and with it whatever was still queued on it, so a command sent into a dead link is never
delivered minutes later when the link comes back. A command that outlives its deadline aborts
its login with a reset for the same reason.
"""

from __future__ import annotations

import contextlib
import socket
import struct
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import paramiko

from provisioner.errors import CommandTimedOut, ConnectError, LoginRefused, SessionNotStarted
from provisioner.inventory.hosts import HostConfig
from provisioner.login_keys import PublicKey
from provisioner.transport.channel import read_channel
from provisioner.transport.remote import (
    Result,
    StderrLines,
    host_label,
    lost_message,
    refuse_sudo_failure,
    root_shell_command,
    root_shell_input,
    timed_out_message,
)
from provisioner.transport.root_shell import RootShell

if TYPE_CHECKING:
    from fabric import Connection as FabricConnection


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
    """An SSH login to one host that runs shell scripts as root and counts round trips."""

    reused = False

    def __init__(self, config: HostConfig) -> None:
        self.config = config
        self.round_trips = 0
        self._client, self._close = _login(config)

    def run_script(self, script: str, timeout: float | None = None,
                   stderr_lines: StderrLines | None = None) -> Result:
        """Run a POSIX sh script as root (sudo for other users); one round trip."""
        self.round_trips += 1
        result = self.run_command(root_shell_command(self.config),
                                  root_shell_input(self.config, script),
                                  timeout or self.config.ssh.command_timeout, stderr_lines)
        refuse_sudo_failure(self.config, result)
        return result

    def run_command(self, command: str, stdin: bytes, timeout: float,
                    stderr_lines: StderrLines | None = None) -> Result:
        """Run one command on a new channel, stdin sent then closed; SessionNotStarted when
        the command never reached the host."""
        channel = self._open_channel()
        try:
            channel.exec_command(command)
            channel.sendall(stdin)
            channel.shutdown_write()
            return _collect(channel, timeout, host_label(self.config), stderr_lines)
        except TimeoutError as error:  # before OSError, of which it is a kind
            self.abort()
            raise CommandTimedOut(timed_out_message(host_label(self.config), error)) from None
        except (OSError, paramiko.SSHException) as error:
            raise ConnectError(f"The SSH connection to {host_label(self.config)} failed while "
                               f"running a command: {error}. Check the host and run again."
                               ) from None
        finally:
            channel.close()  # a kept login lives long: no channel may leak

    def start_root_shell(self) -> RootShell:
        """A root shell kept open on this login for a keeper (root_shell.py); SessionNotStarted
        when the login is gone, ShellGone when the shell does not come up."""
        return RootShell.start(self._open_channel(), self.config.user, host_label(self.config),
                               self.config.ssh.connect_timeout)

    def alive(self) -> bool:
        transport = self._client.get_transport()
        return transport is not None and transport.is_active()

    def close(self) -> None:
        self._close()

    def _open_channel(self) -> paramiko.Channel:
        transport = self._client.get_transport()
        lost = (f"The SSH connection to {host_label(self.config)} was lost. Check the host and "
                "run again; nothing further was sent.")
        if transport is None or not transport.is_active():
            raise SessionNotStarted(lost)
        try:
            channel: paramiko.Channel = transport.open_session(
                timeout=self.config.ssh.connect_timeout)
            return channel
        except (OSError, EOFError, paramiko.SSHException) as error:
            reason = str(error) or type(error).__name__
            if transport.is_active():  # the login looks alive, yet no session opened
                raise SessionNotStarted(
                    f"{host_label(self.config)} opened no new session on the SSH connection "
                    f"({reason}): either sshd's MaxSessions is lower than the runs sharing the "
                    "login, or the link went dead without the login noticing yet. Nothing was "
                    "sent; run again.") from None
            raise SessionNotStarted(f"{lost} ({reason})") from None


    def abort(self) -> None:
        """End the login with a reset: whatever is still queued on it is dropped, never
        delivered later (a plain close would leave the kernel trying to deliver it)."""
        transport = self._client.get_transport()
        sock = getattr(transport, "sock", None)
        if isinstance(sock, socket.socket):
            with contextlib.suppress(OSError):  # already closed
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self._close()


def _collect(channel: paramiko.Channel, timeout: float, host: str,
             stderr_lines: StderrLines | None) -> Result:
    """Everything the command writes, and its exit code once it has exited; ConnectError when
    the login died first (paramiko then reports exit code -1, which is no answer)."""
    out, err = read_channel(channel, timeout, stderr_lines=stderr_lines)
    code = channel.recv_exit_status()
    transport = channel.get_transport()
    if code == -1 and (transport is None or not transport.is_active()):
        raise ConnectError(lost_message(host))
    return Result(out.decode("utf-8", "replace"), err.decode("utf-8", "replace"), code)


def _login(config: HostConfig) -> tuple[paramiko.SSHClient, Callable[[], object]]:
    """Log in; returns the client and what closes everything the login opened.

    A direct login uses paramiko alone: importing fabric (and through it invoke) would cost a
    connection keeper ~100 ms. A jump host goes through fabric's gateway.
    """
    try:
        if config.ssh.jump_host:
            through = _through_jump_host(config)
            _keep_alive(through.client)
            return through.client, through.close
        client = paramiko.SSHClient()
        _pin_host_keys(client, config.ssh.known_hosts, config.ssh.trust_on_first_use)
        sock = _tcp_socket(config.name, config.address, config.port, config.ssh.connect_timeout)
        client.connect(config.address, port=config.port, username=config.user, sock=sock,
                       timeout=config.ssh.connect_timeout, **_auth_arguments(config))
        _keep_alive(client)
        return client, client.close
    except paramiko.BadHostKeyException as error:
        raise LoginRefused(_bad_key_message(config, error)) from None
    except paramiko.AuthenticationException as error:
        raise LoginRefused(_ssh_error_message(config, error)) from None
    except paramiko.SSHException as error:
        raise ConnectError(_ssh_error_message(config, error)) from None
    except (TimeoutError, OSError, EOFError) as error:
        raise ConnectError(_unreachable(config.name, config.address, config.port, error)
                           ) from None


#: Seconds between SSH keepalives. Besides keeping idle NAT state, they are what a run waiting
#: on a long command (apt) sends: with DEAD_LINK_SECONDS, a link that died while the host was
#: the one talking is found within about 45 s.
KEEPALIVE_SECONDS = 15


def _keep_alive(client: paramiko.SSHClient) -> None:
    """Keepalives: a kept login must survive idle NAT and firewall timeouts, and a peer that
    vanished is found when a keepalive goes unacknowledged."""
    transport = client.get_transport()
    if transport is not None:
        transport.set_keepalive(KEEPALIVE_SECONDS)


def _auth_arguments(config: HostConfig) -> dict[str, Any]:
    settings = config.ssh
    arguments: dict[str, Any] = {"banner_timeout": settings.connect_timeout,
                                 "auth_timeout": settings.connect_timeout}
    if settings.identity_file is not None:
        arguments.update(key_filename=[str(settings.identity_file)], look_for_keys=False)
    return arguments


def _through_jump_host(config: HostConfig) -> FabricConnection:
    """The host reached through ssh.jump_host ("user@host:port"), both with the same key and
    known_hosts policy."""
    from fabric import Config
    from fabric import Connection as FabricConnection

    fabric_config = Config(overrides={"load_ssh_configs": False})
    jump = FabricConnection(str(config.ssh.jump_host), config=fabric_config,
                            connect_timeout=int(config.ssh.connect_timeout),
                            connect_kwargs=_auth_arguments(config))
    jump.connect_kwargs["sock"] = _tcp_socket(f"jump host {jump.host}", jump.host, jump.port,
                                              config.ssh.connect_timeout)
    _pin_host_keys(jump.client, config.ssh.known_hosts, config.ssh.trust_on_first_use)
    connection = FabricConnection(
        config.address, user=config.user, port=config.port, config=fabric_config,
        connect_timeout=int(config.ssh.connect_timeout), connect_kwargs=_auth_arguments(config),
        gateway=jump)
    _pin_host_keys(connection.client, config.ssh.known_hosts, config.ssh.trust_on_first_use)
    connection.open()
    return connection


def _tcp_socket(name: str, address: str, port: int, timeout: float) -> socket.socket:
    """A TCP connection with Nagle's algorithm off.

    Every SSH request is a small packet that waits for an answer; with Nagle on, each one can sit
    out the peer's delayed ACK (about 40 ms here), which made every round trip ~5x slower.
    """
    try:
        sock = socket.create_connection((address, port), timeout=timeout)
    except OSError as error:
        raise ConnectError(_unreachable(name, address, port, error)) from None
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    _abort_when_dead(sock)
    return sock


#: Seconds data may stay unacknowledged before the kernel declares the link dead and aborts it
#: (dropping what was queued). Longer than any pause a live, busy host makes; short enough that
#: a run waiting on a dead host fails it in well under a minute.
DEAD_LINK_SECONDS = 30
#: An idle login is probed after this many seconds, so a silent death is found too (paramiko's
#: own keepalive, every KEEPALIVE_SECONDS, is one more probe).
IDLE_PROBE_SECONDS = 10


def _abort_when_dead(sock: socket.socket) -> None:
    """TCP keepalive and TCP_USER_TIMEOUT (Linux; elsewhere only keepalive)."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for name, value in (("TCP_KEEPIDLE", IDLE_PROBE_SECONDS), ("TCP_KEEPINTVL", 5),
                        ("TCP_KEEPCNT", DEAD_LINK_SECONDS // 5),
                        ("TCP_USER_TIMEOUT", DEAD_LINK_SECONDS * 1000)):
        option = getattr(socket, name, None)
        if option is not None:
            sock.setsockopt(socket.IPPROTO_TCP, option, value)


def _pin_host_keys(client: paramiko.SSHClient, known_hosts: Path, trust_first: bool) -> None:
    if known_hosts.is_file():
        client.load_host_keys(str(known_hosts))
    policy = _RecordOnFirstUse(known_hosts) if trust_first else paramiko.RejectPolicy()
    client.set_missing_host_key_policy(policy)


def _unreachable(name: str, address: str, port: int, error: BaseException) -> str:
    limit = (" If it answered a moment ago, its SSH rate limit may be holding this controller "
             "back (ufw's limit rule refuses a 7th new connection within 30 s): wait half a "
             "minute, or list this controller in ufw_ssh_unlimited_sources. If it still refuses, "
             "fail2ban may have banned this controller after failed logins (a wrong key): from "
             "another address or the console, fail2ban-client set sshd unbanip <this address>, "
             "and list it in fail2ban_ignoreip; a ban lasts fail2ban_bantime (3600 s by default)."
             if isinstance(error, ConnectionRefusedError) else "")
    return (f"Cannot reach {name} at {address}:{port}: {error}. Check that the host is up, the "
            f"address and port in the inventory are right, and no firewall is in the way.{limit}")


def _bad_key_message(config: HostConfig, error: paramiko.BadHostKeyException) -> str:
    entry = config.address if config.port == 22 else f"[{config.address}]:{config.port}"
    return (f"The host key of {config.name} ({config.address}:{config.port}) does not match the "
            f"one recorded in {config.ssh.known_hosts}: it now presents {error.key.get_name()} "
            f"{key_fingerprint(error.key)}. This may be an attack or a reinstalled host. Verify "
            "the new key out of band (on the host: ssh-keygen -l -f /etc/ssh/ssh_host_*_key.pub"
            "), then remove the old line with: ssh-keygen -R "
            f"'{entry}' -f {config.ssh.known_hosts}")


def key_fingerprint(key: paramiko.PKey) -> str:
    """The key's fingerprint as ``ssh-keygen -l`` prints it."""
    return PublicKey(key.get_name(), key.get_base64()).fingerprint


def _ssh_error_message(config: HostConfig, error: paramiko.SSHException) -> str:
    text = str(error).rstrip(".")
    if isinstance(error, paramiko.PasswordRequiredException):
        return (f"The key file {config.ssh.identity_file} for {config.name} is encrypted (it "
                "has a passphrase), and the run cannot ask for it: add the key to your SSH "
                "agent (ssh-add), or point ssh.identity_file at a key without one. The host "
                "refused nothing.")
    if "No authentication methods available" in text:
        return (f"No key to log in to {config.name} as {config.user!r} with: "
                "ssh.identity_file is not set and no SSH agent is running (or it holds no "
                "key). Set ssh.identity_file in the inventory, or start an agent and ssh-add "
                "the key.")
    if "not found in known_hosts" in text:
        return (f"{config.name} ({config.address}) is not in {config.ssh.known_hosts}, so its "
                "identity cannot be verified. Add its key (ssh-keyscan, checked out of band), or "
                "set ssh.trust_on_first_use: true for this host to record it on first contact.")
    if isinstance(error, paramiko.AuthenticationException):
        tried = (f"the key {config.ssh.identity_file}" if config.ssh.identity_file else
                 "the SSH agent's keys and ~/.ssh/id_* (no ssh.identity_file is set)")
        return (f"{config.name} ({config.address}:{config.port}) refused login as "
                f"{config.user!r} with {tried}: {text}. Check the user and ssh.identity_file in "
                "the inventory, and that the key's public half is in the user's "
                "~/.ssh/authorized_keys on the host.")
    return f"SSH to {config.name} ({config.address}:{config.port}) failed: {text}."
