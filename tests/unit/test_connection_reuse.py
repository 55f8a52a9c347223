"""Kept logins: which keeper a host uses, and what a keeper answers, with a fake login.

The keeper here is the real Keeper serving a real Unix socket; only the SSH login under it is a
stand-in. Logging in for real, reuse across runs and a lost login are in the integration tests.
"""

from __future__ import annotations

import os
import socket
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from provisioner.errors import ConnectError, ProvisionerError, SessionNotStarted, ShellGone
from provisioner.inventory.hosts import HostConfig
from provisioner.secrets.values import Secret
from provisioner.transport import kept_logins as connection_reuse
from provisioner.transport.keeper import Keeper, KeeperSettings
from provisioner.transport.keeper_wire import receive_message, send_message
from provisioner.transport.kept_logins import (
    KeptConnection,
    _greet,
    close_keepers,
    keeper_name,
    keeper_socket,
    open_connection,
    prepare_keepers,
)
from provisioner.transport.remote import Result, StderrLines
from tests.unit.fakes import make_host


class FakeRootShell:
    """Stands in for a kept root shell: answers every script with its own text until it ends."""

    def __init__(self) -> None:
        self.scripts: list[bytes] = []
        self.usable, self.ended = True, False

    def run(self, script: bytes, timeout: float,
            stderr_lines: StderrLines | None = None) -> Result:
        if self.ended:  # as the real one: it learns of its end when it next tries to send
            self.usable = False
            raise ShellGone("the root shell on web1 has ended")
        self.scripts.append(script)
        return Result(f"shell ran {script.decode()}", "", 0)

    def close(self) -> None:
        self.usable = False


class FakeLogin:
    """Stands in for an SSH login: answers every command with its own text, or fails; keeps a
    root shell only when ``root_shell`` (as if sudo refused it otherwise)."""

    def __init__(self, failure: Exception | None = None, dies: bool = False,
                 root_shell: bool = False) -> None:
        self.failure, self.dies, self.root_shell = failure, dies, root_shell
        self.commands: list[tuple[str, bytes]] = []
        self.is_alive, self.closed = True, False
        self.shells: list[FakeRootShell] = []
        self.shell_starts = 0

    def start_root_shell(self) -> FakeRootShell:
        self.shell_starts += 1
        if not self.root_shell:
            raise ShellGone("the root shell on web1 did not start: sudo: a password is required")
        self.shells.append(FakeRootShell())
        return self.shells[-1]

    def run_command(self, command: str, stdin: bytes, timeout: float,
                    stderr_lines: StderrLines | None = None) -> Result:
        if self.failure is not None:
            self.is_alive = not self.dies  # a lost login fails the command, then shows as dead
            raise self.failure
        self.commands.append((command, stdin))
        if stderr_lines is not None:
            stderr_lines("half way")
        return Result(f"ran {command}", "", 0)

    def alive(self) -> bool:
        return self.is_alive

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def runtime(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A short private directory: socket paths must fit in 108 bytes."""
    with tempfile.TemporaryDirectory(prefix="pk-", dir="/tmp") as directory:
        path = Path(directory) / "run"
        monkeypatch.setenv("PROVISIONER_RUNTIME_DIR", str(path))
        yield path


def config(**ssh: object) -> HostConfig:
    base = make_host().config
    return replace(base, ssh=replace(base.ssh, **ssh))


def serve(login: FakeLogin | None, persist: float = 60.0, refusal: str = "") -> tuple[
        Keeper, Path, threading.Thread]:
    """A keeper for web1 serving in a thread, as a run's start_keepers would leave it."""
    path = keeper_socket(config())
    assert path is not None
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(8)
    settings = KeeperSettings(os.dup(listener.fileno()), path, config(control_persist=persist))
    listener.close()
    keeper = Keeper(settings, login, refusal)  # type: ignore[arg-type]
    thread = threading.Thread(target=lambda: (keeper.serve(), keeper.shut_down()), daemon=True)
    thread.start()
    return keeper, path, thread


# --- which keeper ------------------------------------------------------------------------------


def test_a_keeper_is_named_by_the_login_it_holds() -> None:
    assert keeper_name(config()) == keeper_name(config())
    assert keeper_name(config()) != keeper_name(replace(config(), port=2222))
    assert keeper_name(config()) != keeper_name(replace(config(), user="admin"))
    assert keeper_name(config()) != keeper_name(config(jump_host="admin@192.0.2.1:22"))


def test_a_keeper_keeps_its_name_when_known_hosts_is_written(tmp_path: Path) -> None:
    """Like ControlPersist: ssh or trust-on-first-use recording any key must not orphan the
    keepers of every host; a kept login was verified when it was made."""
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text("192.0.2.10 ssh-ed25519 AAAA\n")
    before = keeper_name(config(known_hosts=known_hosts))

    known_hosts.write_text("192.0.2.10 ssh-ed25519 AAAA\n198.51.100.1 ssh-ed25519 BBBB\n")

    assert keeper_name(config(known_hosts=known_hosts)) == before
    assert keeper_name(config(known_hosts=tmp_path / "other")) != before


def test_sockets_live_in_a_directory_only_the_user_can_enter(runtime: Path) -> None:
    path = keeper_socket(config())

    assert path is not None and path.parent == runtime
    assert runtime.stat().st_mode & 0o777 == 0o700


def test_a_socket_path_too_long_to_bind_means_no_keeper(monkeypatch: pytest.MonkeyPatch,
                                                        tmp_path: Path) -> None:
    monkeypatch.setenv("PROVISIONER_RUNTIME_DIR", str(tmp_path / ("x" * 90)))

    assert keeper_socket(config()) is None


def test_control_persist_zero_logs_in_directly_without_a_keeper(
        runtime: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import provisioner.transport.connection as direct

    monkeypatch.setattr(direct, "_login", lambda cfg: (object(), lambda: None))

    connection = open_connection(config(control_persist=0))

    assert isinstance(connection, direct.Connection) and not connection.reused
    assert not runtime.exists()


# --- what a keeper answers ---------------------------------------------------------------------


def test_a_ready_keeper_greets_fresh_then_runs_each_request_on_its_login(runtime: Path) -> None:
    login = FakeLogin()
    _, path, _ = serve(login)

    greeted = _greet(path, 5)
    assert greeted is not None
    sock, fresh = greeted
    send_message(sock, {"op": "run", "command": "sh -s", "timeout": 5}, b"echo hi\n")
    header, bodies = receive_message(sock)
    sock.close()

    assert fresh and header["exit_code"] == 0 and bodies[0] == b"ran sh -s"
    assert login.commands == [("sh -s", b"echo hi\n")]
    again = _greet(path, 5)
    assert again is not None and again[1] is False  # the login has been used: a later run reuses
    again[0].close()


def test_a_keeper_whose_login_failed_hands_every_run_that_error(runtime: Path) -> None:
    _, path, _ = serve(None, refusal="web1 (192.0.2.10) refused login as 'root'")

    with pytest.raises(ConnectError, match="refused login"):
        _greet(path, 5)


def test_a_keeper_whose_login_died_is_not_used(runtime: Path) -> None:
    login = FakeLogin()
    login.is_alive = False
    _, path, thread = serve(login)

    assert _greet(path, 5) is None
    thread.join(5)
    assert not path.exists() and login.closed


def test_a_command_that_never_started_on_a_lost_login_stops_the_keeper(runtime: Path) -> None:
    _, path, thread = serve(FakeLogin(SessionNotStarted("The SSH connection was lost."),
                                      dies=True))
    greeted = _greet(path, 5)
    assert greeted is not None

    send_message(greeted[0], {"op": "run", "command": "sh -s", "timeout": 5}, b"true\n")
    header, _ = receive_message(greeted[0])
    greeted[0].close()

    assert (header["started"], header["error"]) == (False, "The SSH connection was lost.")
    thread.join(5)
    assert not thread.is_alive()


def test_a_keeper_leaves_once_idle_for_its_persist_time(runtime: Path) -> None:
    login = FakeLogin()
    _, path, thread = serve(login, persist=0.3)

    thread.join(5)

    assert not thread.is_alive() and not path.exists() and login.closed


def test_close_keepers_tells_the_chosen_keepers_to_exit(runtime: Path) -> None:
    _, path, thread = serve(FakeLogin())

    assert close_keepers({"198.51.100.7"}) == []
    assert close_keepers({"192.0.2.10"}) == ["web1"]
    thread.join(5)
    assert not path.exists()


def test_close_keepers_removes_a_socket_a_killed_keeper_left(runtime: Path) -> None:
    path = keeper_socket(config())
    assert path is not None
    socket.socket(socket.AF_UNIX, socket.SOCK_STREAM).bind(str(path))  # bound, nobody listening

    assert close_keepers() == []
    assert not path.exists()


# --- what a run does with the answers ----------------------------------------------------------


@pytest.fixture
def replacement_keepers(monkeypatch: pytest.MonkeyPatch) -> list[FakeLogin]:
    """start_keepers stand-in: a healthy in-thread keeper takes over the socket's name."""
    logins: list[FakeLogin] = []

    def start(hosts: list[tuple[HostConfig, Path]], parallel: int = 10) -> None:
        path = hosts[0][1]
        path.unlink(missing_ok=True)
        logins.append(FakeLogin())
        serve(logins[-1])

    monkeypatch.setattr(connection_reuse, "start_keepers", start)
    return logins


def test_a_run_whose_first_command_never_started_retries_once_on_a_new_login(
        runtime: Path, replacement_keepers: list[FakeLogin]) -> None:
    serve(FakeLogin(SessionNotStarted("The SSH connection to web1 was lost."), dies=True))
    connection = KeptConnection(config(), keeper_socket(config()))  # type: ignore[arg-type]

    result = connection.run_script("true\n")

    assert result.stdout == "ran /bin/sh -s" and not connection.reused
    assert [stdin for _, stdin in replacement_keepers[0].commands] == [b"true\n"]
    connection.close()


def test_a_command_that_may_have_run_is_never_sent_again(
        runtime: Path, replacement_keepers: list[FakeLogin]) -> None:
    serve(FakeLogin(ConnectError("A command on web1 timed out")))
    connection = KeptConnection(config(), keeper_socket(config()))  # type: ignore[arg-type]

    with pytest.raises(ConnectError, match="timed out"):
        connection.run_script("apt-get install -y nginx\n")

    assert replacement_keepers == []
    connection.close()


def test_a_run_without_a_keeper_starts_one_and_reports_a_new_login(
        runtime: Path, replacement_keepers: list[FakeLogin]) -> None:
    connection = open_connection(config())

    assert connection.run_script("true\n").exit_code == 0
    assert not connection.reused and len(replacement_keepers) == 1
    connection.close()


def test_a_second_command_that_never_started_is_not_retried(
        runtime: Path, replacement_keepers: list[FakeLogin]) -> None:
    login = FakeLogin()
    serve(login)
    connection = KeptConnection(config(), keeper_socket(config()))  # type: ignore[arg-type]
    connection.run_script("true\n")
    login.failure = SessionNotStarted("web1 refused a new session on the SSH connection")

    with pytest.raises(ConnectError, match="refused a new session"):
        connection.run_script("true\n")

    assert replacement_keepers == []
    connection.close()


def test_a_refused_session_on_a_live_login_leaves_the_keeper_serving(runtime: Path) -> None:
    login = FakeLogin(SessionNotStarted("web1 refused a new session"))
    _, path, thread = serve(login)
    greeted = _greet(path, 5)
    assert greeted is not None

    send_message(greeted[0], {"op": "run", "command": "sh -s", "timeout": 5}, b"true\n")
    header, _ = receive_message(greeted[0])
    greeted[0].close()

    assert header["started"] is False
    assert thread.is_alive() and path.exists()


def test_a_keeper_refusing_runs_survives_a_run_that_already_left(runtime: Path) -> None:
    _, path, _ = serve(None, refusal="web1 (192.0.2.10) refused login as 'root'")
    gone = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    gone.connect(str(path))
    gone.close()

    with pytest.raises(ConnectError, match="refused login"):
        _greet(path, 5)


def test_a_keeper_serves_nobody_but_its_own_user(runtime: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    import provisioner.transport.keeper as keeper_module

    _, path, _ = serve(FakeLogin())
    monkeypatch.setattr(keeper_module, "peer_uid", lambda sock: os.getuid() + 1)

    assert _greet(path, 5) is None


def test_prepare_keepers_starts_one_keeper_for_the_hosts_without_one(
        runtime: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    started: list[list[str]] = []
    monkeypatch.setattr(connection_reuse, "start_keepers",
                        lambda hosts, parallel: started.append([c.name for c, _ in hosts]))
    serve(FakeLogin())  # web1 has a keeper already
    db1 = replace(config(), name="db1", address="192.0.2.20")

    prepare_keepers([config(), db1, config(control_persist=0)], parallel=4)

    assert started == [["db1"]]


# --- the kept root shell -----------------------------------------------------------------------


def kept_runs(path: Path, host: HostConfig, *scripts: str) -> list[str]:
    """Each script as one run's only round trip through the keeper at path."""
    outputs = []
    for script in scripts:
        connection = KeptConnection(host, path)
        outputs.append(connection.run_script(script).stdout)
        connection.close()
    return outputs


def test_a_keeper_runs_every_run_in_one_kept_root_shell(runtime: Path) -> None:
    login = FakeLogin(root_shell=True)
    _, path, _ = serve(login)

    outputs = kept_runs(path, config(), "echo one", "echo two")

    assert outputs == ["shell ran echo one", "shell ran echo two"]
    assert login.shell_starts == 1 and login.commands == []


def test_a_root_shell_that_ended_between_runs_costs_no_run_and_is_started_again(
        runtime: Path) -> None:
    login = FakeLogin(root_shell=True)
    _, path, _ = serve(login)
    kept_runs(path, config(), "echo one")
    login.shells[0].ended = True  # killed on the host, say

    outputs = kept_runs(path, config(), "echo two", "echo three")

    assert outputs == ["ran /bin/sh -s", "shell ran echo three"]
    assert login.shell_starts == 2


def test_a_host_refusing_the_root_shell_gets_a_session_per_script_and_no_more_tries(
        runtime: Path) -> None:
    login = FakeLogin(root_shell=False)
    _, path, _ = serve(login)

    outputs = kept_runs(path, config(), "echo one", "echo two")

    assert outputs == ["ran /bin/sh -s", "ran /bin/sh -s"]
    assert login.shell_starts == 1


def test_no_root_shell_is_kept_for_a_host_whose_sudo_needs_a_password(runtime: Path) -> None:
    login = FakeLogin(root_shell=True)
    _, path, _ = serve(login)
    guarded = replace(config(sudo_password=Secret("s3cret")), user="admin")

    kept_runs(path, guarded, "echo one")

    assert login.shell_starts == 0
    assert login.commands == [("sudo -S -p '' -H /bin/sh -s", b"s3cret\necho one")]


def test_a_keeper_shutting_down_ends_its_root_shell(runtime: Path) -> None:
    login = FakeLogin(root_shell=True)
    _, path, thread = serve(login)
    kept_runs(path, config(), "echo one")

    close_keepers()
    thread.join(5)

    assert not login.shells[0].usable and login.closed


def test_stderr_lines_reach_the_run_while_the_keeper_waits_for_the_answer(runtime: Path) -> None:
    keeper, path, thread = serve(FakeLogin())
    heard: list[str] = []
    run = KeptConnection(config(), path)
    try:
        result = run.run_script("true", stderr_lines=heard.append)
        quiet = run.run_script("true")
    finally:
        run.close()
        keeper._stop()
        thread.join(5)
    assert heard == ["half way"]
    assert result.stdout.startswith("ran ") and quiet.exit_code == 0


def test_a_directory_others_can_enter_is_refused_with_what_to_do(runtime: Path) -> None:
    runtime.mkdir(mode=0o755)
    runtime.chmod(0o755)
    with pytest.raises(ProvisionerError, match=r"can be entered by others \(mode 0755; "
                       r"`chmod 700 .*PROVISIONER_RUNTIME_DIR"):
        keeper_socket(config())


def test_a_file_where_the_directory_should_be_is_refused_as_one(runtime: Path) -> None:
    runtime.write_text("")
    with pytest.raises(ProvisionerError, match="is not a directory"):
        keeper_socket(config())


def test_a_symbolic_link_to_a_private_directory_is_refused(runtime: Path, tmp_path: Path
                                                           ) -> None:
    (tmp_path / "real").mkdir(mode=0o700)
    runtime.symlink_to(tmp_path / "real")
    with pytest.raises(ProvisionerError, match="is a symbolic link"):
        keeper_socket(config())
