"""A connection keeper: the process that holds SSH logins open between runs.

``python -m provisioner.transport.keeper`` is started by a run (kept_logins.py) with, per
host, a listening Unix socket already bound; the settings arrive on stdin. For each host it logs
in once (in parallel), then runs every request on a new channel of that login, for any run of the
same user that connects, until the host's socket has been idle for ``ssh.control_persist``
seconds (as the latest run that used it set it), the login dies, or a run tells it to exit; the
process ends with its last host. Like OpenSSH's ControlPersist, it spares every later run the
TCP, key exchange, authentication and PAM session setup on both ends. One process serves all the
hosts a run started it for, so a first run on ten hosts starts one Python, not ten.

Every accepted client first gets a greeting: ``ready`` (with ``fresh`` until the login's first
request), or not ready with the login's error or ``lost``. A client that got no greeting, or a
not-ready one, knows nothing it sent was run.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from provisioner.errors import (
    CommandTimedOut,
    ConnectError,
    ProvisionerError,
    SessionNotStarted,
    ShellGone,
)
from provisioner.inventory.hosts import HostConfig
from provisioner.transport.keeper_wire import (
    WireError,
    host_from_settings,
    peer_uid,
    receive_message,
    send_message,
)

if TYPE_CHECKING:
    from provisioner.transport.connection import Connection
    from provisioner.transport.remote import Result, StderrLines
    from provisioner.transport.root_shell import RootShell

#: What a run gets back for one script: a header (exit code, or error) and stdout, stderr.
Answer = tuple[dict[str, Any], bytes, bytes]

#: How often the accept loop looks up to check for a reason to stop (idle, lost, told to).
POLL_INTERVAL = 1.0


@dataclass(frozen=True)
class KeeperSettings:
    """What a run hands its keeper: where to listen, and whom to log in to (whose
    ``ssh.control_persist`` says how long to stay)."""

    listen_fd: int
    socket_path: Path
    host: HostConfig


class Keeper:
    """Serves runs over one listening socket with one SSH login, until idle or lost."""

    def __init__(self, settings: KeeperSettings, login: Connection | None,
                 refusal: str = "") -> None:
        self.settings, self.login, self.refusal = settings, login, refusal
        self.listener = socket.socket(fileno=settings.listen_fd)
        self.path_inode = _inode(settings.socket_path)
        self.persist = settings.host.ssh.control_persist
        self.active = 0
        self.served = 0
        self.last_active = time.monotonic()
        self.stopping = threading.Event()
        self.guard = threading.Condition()
        self.withdrawn = False
        self.root_shell: RootShell | None = None
        self.root_shell_lock = threading.Lock()
        self.root_shell_refused = False

    def serve(self) -> str:
        """Accept runs until there is a reason to stop; returns that reason."""
        if self.login is None:
            return self._refuse_waiting_runs()
        while not self.stopping.is_set():
            reason = self._reason_to_stop()
            if reason:
                return reason
            self.listener.settimeout(min(POLL_INTERVAL, max(self._idle_left(), 0.01)))
            try:
                client, _ = self.listener.accept()
            except TimeoutError:
                continue
            if not _same_user(client):
                client.close()
                continue
            with self.guard:
                self.active += 1
            threading.Thread(target=self._serve_client, args=(client,), daemon=True).start()
        return "told to exit"

    def shut_down(self) -> None:
        """Stop listening first (so no new run waits on us), then let running requests end."""
        self._withdraw()
        self.listener.close()
        with self.guard:
            self.guard.wait_for(lambda: self.active == 0)
        if self.root_shell is not None:
            self.root_shell.close()
        if self.login is not None:
            self.login.close()

    def _withdraw(self) -> None:
        """Remove our socket's name, once: after that the name may already be a newer
        keeper's (whose socket can even reuse our inode number)."""
        with self.guard:
            if self.withdrawn:
                return
            self.withdrawn = True
        if _inode(self.settings.socket_path) == self.path_inode:
            self.settings.socket_path.unlink(missing_ok=True)

    def _stop(self) -> None:
        """From a client's thread: no run may find us from now on; the accept loop ends soon."""
        self._withdraw()
        self.stopping.set()

    def _refuse_waiting_runs(self) -> str:
        """The runs that started us may already be waiting: each gets the login's error."""
        self.listener.settimeout(0.2)
        while True:
            try:
                client, _ = self.listener.accept()
            except TimeoutError:
                return "login failed"
            try:
                with client:
                    if _same_user(client):
                        send_message(client, {"ready": False, "error": self.refusal})
            except OSError:
                continue  # that run has gone (interrupted, or only checked we are here)

    def _reason_to_stop(self) -> str:
        if self.login is None:
            return "login failed"
        if not self.login.alive():
            return "login lost"
        with self.guard:
            if self.active == 0 and self._idle_left() <= 0:
                return f"idle for {self.persist:g} s"
        return ""

    def _idle_left(self) -> float:
        return self.last_active + self.persist - time.monotonic()

    def _serve_client(self, client: socket.socket) -> None:
        try:
            with client:
                self._converse(client)
        except (OSError, WireError, EOFError):
            pass  # the run went away; whatever it sent has been answered or never started
        finally:
            with self.guard:
                self.active -= 1
                self.last_active = time.monotonic()
                self.guard.notify_all()

    def _converse(self, client: socket.socket) -> None:
        if self.login is None or not self.login.alive() or self.stopping.is_set():
            self._stop()
            send_message(client, {"ready": False, "lost": True})
            return
        host = self.settings.host
        send_message(client, {"ready": True, "pid": os.getpid(), "host": host.name,
                              "address": host.address, "fresh": self.served == 0})
        while True:
            try:
                header, bodies = receive_message(client)
            except EOFError:
                return
            if header.get("op") == "exit":
                self._stop()
                send_message(client, {"exiting": True})
                return
            self.persist = float(header.get("persist", self.persist))
            answer = self._run(header, bodies, _passing_on(client, header))
            self.served += 1  # before the answer: a client greeted after it must not see fresh
            send_message(client, *answer)

    def _run(self, header: dict[str, Any], bodies: list[bytes],
             stderr_lines: StderrLines | None) -> Answer:
        assert self.login is not None
        if header.get("keep_root_shell"):
            answer = self._run_in_root_shell(bodies[0], float(header["timeout"]), stderr_lines)
            if answer is not None:
                return answer
        try:
            result = self.login.run_command(str(header["command"]), bodies[0],
                                            float(header["timeout"]), stderr_lines)
        except SessionNotStarted as error:
            if not self.login.alive():
                self._stop()
            return {"error": str(error), "started": False}, b"", b""
        except ConnectError as error:
            if not self.login.alive():
                self._stop()
            return {"error": str(error), "started": True}, b"", b""
        return _answer(result)

    def _run_in_root_shell(self, script: bytes, timeout: float,
                           stderr_lines: StderrLines | None) -> Answer | None:
        """The script's answer from the kept root shell (root_shell.py); None, with nothing
        run, when the shell cannot take it: busy with another run's script, or not startable."""
        if self.root_shell_refused or not self.root_shell_lock.acquire(blocking=False):
            return None
        try:
            shell = self._started_root_shell()
            if shell is None:
                return None
            result = shell.run(script, timeout, stderr_lines)
        except ShellGone:
            return None  # it ended since the last run (killed, dropped): a new one next time
        except CommandTimedOut as error:
            assert self.login is not None
            self.login.abort()  # nothing still queued on it may reach the host later
            self._stop()
            return {"error": str(error), "started": True}, b"", b""
        except ConnectError as error:
            return {"error": str(error), "started": True}, b"", b""
        finally:
            self.root_shell_lock.release()
        return _answer(result)

    def _started_root_shell(self) -> RootShell | None:
        assert self.login is not None
        if self.root_shell is not None and self.root_shell.usable:
            return self.root_shell
        try:
            self.root_shell = self.login.start_root_shell()
        except SessionNotStarted:
            return None  # the ordinary way reports it
        except ShellGone as error:
            self.root_shell_refused = True
            log(f"{self.settings.host.name}: no kept root shell, a session per script: {error}")
            return None
        return self.root_shell


def _passing_on(client: socket.socket, header: dict[str, Any]) -> StderrLines | None:
    """What hands the run each stderr line as it arrives, when the run asked for them."""
    if not header.get("stderr_lines"):
        return None
    return lambda line: send_message(client, {"stderr_line": line})


def _answer(result: Result) -> Answer:
    return {"exit_code": result.exit_code}, result.stdout.encode(), result.stderr.encode()


def _same_user(client: socket.socket) -> bool:
    """Only the user who owns the keeper may use its login (the 0700 directory says the same)."""
    return peer_uid(client) == os.getuid()


def _inode(path: Path) -> int | None:
    try:
        return path.stat().st_ino
    except OSError:
        return None


def read_settings(text: str) -> tuple[list[KeeperSettings], int]:
    """The hosts to keep, and how many of them may be logging in at once."""
    data = json.loads(text)
    return [KeeperSettings(int(item["listen_fd"]), Path(item["socket_path"]),
                           host_from_settings(item["host"]))
            for item in data["hosts"]], max(1, int(data["parallel"]))


def keep(settings: KeeperSettings, logins: threading.Semaphore) -> None:
    """Log in to one host and serve it until there is a reason to stop."""
    host = settings.host
    with logins:
        keeper = _logged_in(settings)
    log(f"{host.name} ({host.address}:{host.port}): " +
        ("logged in" if keeper.login is not None else f"login failed: {keeper.refusal}"))
    try:
        reason = keeper.serve()
    finally:
        keeper.shut_down()
    log(f"{host.name}: stopped: {reason}")


def _logged_in(settings: KeeperSettings) -> Keeper:
    from provisioner.transport.connection import Connection

    try:
        return Keeper(settings, Connection(settings.host))
    except ProvisionerError as error:
        return Keeper(settings, None, str(error))
    except Exception:  # a bug: its traceback goes to the log, and the waiting run is told where
        log(f"{settings.host.name}: login crashed:\n{traceback.format_exc()}")
        return Keeper(settings, None, f"The connection keeper for {settings.host.name} crashed "
                      f"while logging in; the traceback is in {settings.socket_path.parent}/"
                      "keepers.log. Set ssh.control_persist: 0 to log in directly.")


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    every, parallel = read_settings(sys.stdin.read())
    sys.stdin.close()
    if not any(item.host.ssh.jump_host for item in every):
        # paramiko imports invoke (45 ms) only for ssh_config's "Match exec", which a keeper
        # never reads; a first run waits for its keeper's start. Jump hosts need fabric, which
        # needs invoke.
        sys.modules.setdefault("invoke", None)  # type: ignore[arg-type]
    log(f"keeper pid {os.getpid()} for {', '.join(item.host.name for item in every)}")
    # As many logins at once as the run works on hosts at once (--parallel): sshd's MaxStartups
    # and a jump host must not see more.
    logins = threading.Semaphore(parallel)
    threads = [threading.Thread(target=keep, args=(item, logins)) for item in every]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def log(message: str) -> None:
    """One line per event in keepers.log; a single write, so threads' lines never interleave."""
    sys.stderr.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {message}\n")
    sys.stderr.flush()


if __name__ == "__main__":
    main()
