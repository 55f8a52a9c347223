"""A run's connection to a host: the login a keeper holds open, started by this run if need be.

Logging in costs more than a converged host's whole check: TCP, key exchange, authentication and
sshd's PAM session, on both ends, every run. So, like OpenSSH's ControlPersist, the first run
starts a connection keeper (keeper.py) that logs in and stays for
``ssh.control_persist`` seconds after its last use; later runs send their scripts through it
over a Unix socket and import no SSH library at all. ``control_persist: 0`` means a new login
every run.

A keeper is found by a name derived from everything that decides *which* login it holds
(address, port, user, key file, known_hosts file, trust-on-first-use, jump host), so changing
any of those gets a new login that verifies the host afresh. As with ControlPersist, a kept
login was verified when it was made: editing known_hosts does not end it, ``invoke disconnect``
does. Sockets live in a 0700 directory of the user's; keeper and run each check the other end
is the same user (SO_PEERCRED, so Linux only: elsewhere every run logs in directly). Safety
proofs (a new login after an SSH or firewall change) never go through a keeper.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import socket
import stat
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from provisioner.errors import ConnectError, ProvisionerError
from provisioner.inventory.hosts import HostConfig
from provisioner.local_files import cache_directory
from provisioner.transport.keeper_wire import (
    WireError,
    host_settings,
    peer_uid,
    receive_message,
    send_message,
)
from provisioner.transport.remote import (
    RemoteShell,
    Result,
    StderrLines,
    host_label,
    may_keep_root_shell,
    refuse_sudo_failure,
    root_shell_command,
    root_shell_input,
)

#: Bumped whenever keeper and run stop understanding each other; part of every keeper's name.
PROTOCOL = 1
#: Unix socket paths longer than this cannot be bound (sun_path is 108 bytes with its NUL).
MAX_SOCKET_PATH = 100
#: Keeper processes this process started, kept so they are reaped, not left as zombies.
_started: list[subprocess.Popen[bytes]] = []


def open_connection(config: HostConfig) -> RemoteShell:
    """The host's kept login when reuse is on and possible, else a new login for this run."""
    path = keeper_socket(config) if config.ssh.control_persist > 0 else None
    if path is None:
        from provisioner.transport.connection import Connection

        return Connection(config)
    return KeptConnection(config, path)


def runtime_directory() -> Path:
    """$PROVISIONER_RUNTIME_DIR, else $XDG_RUNTIME_DIR/provisioner, else the cache directory's
    ``connections``."""
    explicit = os.environ.get("PROVISIONER_RUNTIME_DIR")
    if explicit:
        return Path(explicit)
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    return Path(runtime) / "provisioner" if runtime else cache_directory() / "connections"


def keeper_socket(config: HostConfig) -> Path | None:
    """Where this host's keeper listens; None when the system cannot tell who is at the other
    end of a socket or the path is too long to bind. A directory others could enter is refused
    (ProvisionerError): quietly logging in afresh every run instead soon meets ufw's limit."""
    directory = runtime_directory()
    path = directory / f"{keeper_name(config)}.sock"
    if not hasattr(socket, "SO_PEERCRED") or len(str(path)) > MAX_SOCKET_PATH:
        return None
    problem = _not_private(directory)
    if problem is not None:
        raise ProvisionerError(
            f"{directory}, where kept logins live, {problem}; a login kept there would not be "
            "yours alone. Set PROVISIONER_RUNTIME_DIR to a directory you own that nobody else "
            "can enter (mode 0700; a missing one is created so), or ssh.control_persist: 0 to "
            "log in afresh every run.")
    return path


def keeper_name(config: HostConfig) -> str:
    ssh = config.ssh
    identity = [PROTOCOL, os.getuid(), config.address, config.port, config.user,
                str(ssh.identity_file), str(ssh.known_hosts), ssh.trust_on_first_use,
                ssh.jump_host]
    return hashlib.sha256(json.dumps(identity).encode()).hexdigest()[:24]


def _not_private(directory: Path) -> str | None:
    """What keeps ``directory`` from holding kept logins (created 0700 when missing), or None."""
    try:
        directory.mkdir(mode=0o700, parents=True)
    except FileExistsError:
        pass  # looked at below, whatever it is
    except OSError as error:
        return f"cannot be made ({error.strerror or error})"
    try:
        status = directory.lstat()
    except OSError as error:
        return f"cannot be read ({error.strerror or error})"
    if stat.S_ISLNK(status.st_mode):
        return "is a symbolic link"
    if not stat.S_ISDIR(status.st_mode):
        return "is not a directory"
    if status.st_uid != os.getuid():
        return f"belongs to user id {status.st_uid}, not to you (id {os.getuid()})"
    if status.st_mode & 0o077:
        return (f"can be entered by others (mode {stat.S_IMODE(status.st_mode):04o}; "
                f"`chmod 700 {directory}` makes it private)")
    return None


class KeptConnection:
    """A run's session with a host's keeper; one request/answer on the socket per round trip."""

    def __init__(self, config: HostConfig, path: Path) -> None:
        self.config, self.path = config, path
        self.round_trips = 0
        self.reused = True
        self._socket = self._attach()

    def run_script(self, script: str, timeout: float | None = None,
                   stderr_lines: StderrLines | None = None) -> Result:
        """Run a POSIX sh script as root through the keeper's login; one round trip."""
        self.round_trips += 1
        limit = timeout or self.config.ssh.command_timeout
        header, bodies = self._request(script, limit, stderr_lines)
        if "error" in header and not header.get("started", True) and self.round_trips == 1:
            self.close()  # the kept login died since the last run: log in again, once
            self._socket = self._attach()
            header, bodies = self._request(script, limit, stderr_lines)
        if "error" in header:
            raise ConnectError(str(header["error"]))
        result = Result(bodies[0].decode("utf-8", "replace"), bodies[1].decode("utf-8", "replace"),
                        int(header["exit_code"]))
        refuse_sudo_failure(self.config, result)
        return result

    def close(self) -> None:
        self._socket.close()

    def _request(self, script: str, timeout: float, stderr_lines: StderrLines | None
                 ) -> tuple[dict[str, Any], list[bytes]]:
        """The keeper's answer; stderr lines it passes on before it are handed to
        ``stderr_lines`` (the keeper sends them only when asked to)."""
        self._socket.settimeout(timeout + self.config.ssh.connect_timeout + 5)
        try:
            send_message(self._socket, {"op": "run", "command": root_shell_command(self.config),
                                        "keep_root_shell": may_keep_root_shell(self.config),
                                        "timeout": timeout,
                                        "persist": self.config.ssh.control_persist,
                                        "stderr_lines": stderr_lines is not None},
                         root_shell_input(self.config, script))
            header, bodies = receive_message(self._socket)
            while "stderr_line" in header:
                if stderr_lines is not None:
                    stderr_lines(str(header["stderr_line"]))
                header, bodies = receive_message(self._socket)
            return header, bodies
        except (OSError, EOFError, WireError) as error:
            raise ConnectError(f"The kept SSH connection to {host_label(self.config)} stopped "
                               f"answering while running a command ({error or type(error).__name__}"
                               f"). Run `invoke disconnect --host {self.config.name}`, then run "
                               "again; a new login will be made.") from None

    def _attach(self) -> socket.socket:
        """The live keeper's socket; a new keeper's when there is none (or it lost its login)."""
        greeted = _greet(self.path, self._patience())
        if greeted is None:
            try:
                with _spawn_lock(self.path):
                    # another run may have started one meanwhile
                    greeted = _greet(self.path, self._patience())
                    if greeted is None:
                        start_keepers([(self.config, self.path)])
                        greeted = _greet(self.path, self._patience())
            except OSError as error:
                raise ConnectError(f"Could not start a connection keeper for "
                                   f"{host_label(self.config)} in {self.path.parent}: {error}. "
                                   "Set ssh.control_persist: 0 to log in directly.") from None
        if greeted is None:
            raise ConnectError(f"The connection keeper for {host_label(self.config)} did not "
                               f"answer; see {self.path.parent / 'keepers.log'}, or set "
                               "ssh.control_persist: 0 to log in directly.")
        sock, fresh = greeted
        self.reused = not fresh
        return sock

    def _patience(self) -> float:
        """How long a greeting may take: a keeper answers only once its login is done."""
        return self.config.ssh.connect_timeout * 3 + 10


def _greet(path: Path, patience: float) -> tuple[socket.socket, bool] | None:
    """A socket to a ready keeper, and whether its login is still unused; None when no live
    keeper listens there. A keeper whose login failed raises that login's error."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(patience)
    try:
        sock.connect(str(path))
        if peer_uid(sock) != os.getuid():  # nobody else's process gets our sudo password
            raise ConnectionRefusedError("keeper socket owned by another user")
        header, _ = receive_message(sock)
    except (OSError, EOFError, WireError):
        sock.close()
        return None
    if header.get("ready"):
        return sock, bool(header.get("fresh"))
    sock.close()
    if not header.get("lost"):
        raise ConnectError(str(header.get("error", "the connection keeper refused")))
    return None


def prepare_keepers(configs: Sequence[HostConfig], parallel: int) -> None:
    """Start one keeper process for all the run's hosts that reuse logins but have no keeper.

    Called before the hosts' threads open their connections, so a first run on many hosts
    starts one Python for all of them (logging in to ``parallel`` hosts at a time); each thread
    then waits for its own host's greeting. A socket name that exists is left to the host's own
    attach: a live keeper must not be woken twice per run, and the rare socket a killed keeper
    left behind is replaced there.
    """
    wanted = [(config, path) for config in configs if config.ssh.control_persist > 0
              for path in [keeper_socket(config)] if path is not None]
    missing = [(config, path) for config, path in wanted if not path.exists()]
    if not missing:
        return
    try:
        with ExitStack() as locks:
            for _, path in sorted(missing, key=lambda item: str(item[1])):
                locks.enter_context(_spawn_lock(path))
            still = [(config, path) for config, path in missing if not path.exists()]
            if still:
                start_keepers(still, parallel)
    except (OSError, ConnectError):
        return  # each host's own attach tries again and reports the reason


@contextmanager
def _spawn_lock(path: Path) -> Iterator[None]:
    """Two runs starting at once must not both start a keeper for the same host."""
    with path.with_suffix(".lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def start_keepers(hosts: Sequence[tuple[HostConfig, Path]], parallel: int = 10) -> None:
    """Bind each host's socket, then start one keeper process that logs in to all of them.

    The sockets are bound here, before the keeper runs, so a run can connect at once and its
    greeting simply waits in the socket's backlog until that host's login is done. Each path is
    the one the run is waiting on, worked out once.
    """
    listeners, settings = [], []
    try:
        for config, path in hosts:
            path.unlink(missing_ok=True)
            listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            listeners.append(listener)
            listener.bind(str(path))
            listener.listen(64)
            settings.append({"listen_fd": listener.fileno(), "socket_path": str(path),
                             "host": host_settings(config)})
        _spawn({"hosts": settings, "parallel": parallel}, runtime_directory() / "keepers.log")
    except OSError as error:
        raise ConnectError(f"Could not start a connection keeper in {runtime_directory()}: "
                           f"{error}. Set ssh.control_persist: 0 to log in directly.") from None
    finally:
        for listener in listeners:
            listener.close()


#: What a keeper inherits of the run's environment: what a login may need (the agent, HOME for
#: ~/.ssh), never the variables secrets are read from (a keeper lives on for minutes).
KEEPER_ENVIRONMENT = ("PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "LC_CTYPE",
                      "SSH_AUTH_SOCK", "TMPDIR", "PYTHONDONTWRITEBYTECODE")
#: keepers.log is started afresh (the old one kept as .1) once it grows past this.
LOG_LIMIT = 1 << 20


def _spawn(settings: dict[str, Any], log_path: Path) -> None:
    package_root = str(Path(__file__).resolve().parents[2])
    environment = {name: os.environ[name] for name in KEEPER_ENVIRONMENT if name in os.environ}
    environment["PYTHONPATH"] = os.pathsep.join(
        filter(None, [package_root, os.environ.get("PYTHONPATH")]))
    _started[:] = [process for process in _started if process.poll() is None]
    if log_path.exists() and log_path.stat().st_size > LOG_LIMIT:
        log_path.replace(log_path.with_suffix(".log.1"))
    listen_fds = [item["listen_fd"] for item in settings["hosts"]]
    # 0600 like the rest of the cache (a log an older version created 0644 is tightened too).
    log_fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    os.fchmod(log_fd, 0o600)
    with os.fdopen(log_fd, "ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "provisioner.transport.keeper"], stdin=subprocess.PIPE,
            stdout=log, stderr=log, pass_fds=listen_fds, start_new_session=True, cwd="/",
            env=environment)
    _started.append(process)
    assert process.stdin is not None
    try:
        process.stdin.write(json.dumps(settings).encode())
        process.stdin.close()
    except BrokenPipeError:
        pass  # it died at once; each run waiting on its socket reports that no keeper answered


def close_keepers(addresses: set[str] | None = None) -> list[str]:
    """Tell keepers (of these addresses, or all) to exit; returns the hosts they served."""
    directory = runtime_directory()
    paths = sorted(directory.glob("*.sock")) if directory.is_dir() else []
    return [name for name in (_tell_to_exit(path, addresses) for path in paths) if name]


def _tell_to_exit(path: Path, addresses: set[str] | None) -> str:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(5)
    try:
        sock.connect(str(path))
        greeting, _ = receive_message(sock)
        if addresses is not None and greeting.get("address") not in addresses:
            return ""
        send_message(sock, {"op": "exit"})
        receive_message(sock)
        return str(greeting.get("host", path.stem))
    except (OSError, EOFError, WireError) as error:
        if isinstance(error, OSError) and error.errno in (errno.ECONNREFUSED, errno.ENOENT):
            path.unlink(missing_ok=True)  # a keeper that was killed left its socket behind
        return ""
    finally:
        sock.close()
