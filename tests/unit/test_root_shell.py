"""The kept root shell's framing: its driver run by this machine's sh, and answer parsing."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from provisioner.inventory.hosts import HostConfig, SshSettings
from provisioner.secrets.values import Secret
from provisioner.transport.remote import Result, may_keep_root_shell
from provisioner.transport.root_shell import DRIVER, MARK_WINDOW, answered, frame, start_command


def request(script: str, token: str) -> bytes:
    return frame(script.encode(), token.encode())


def drive(stdin: bytes, cwd: Path) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["/bin/sh", "-c", DRIVER, "provisioner-root-shell", "READY"],
                          input=stdin, capture_output=True, cwd=cwd, timeout=30, check=False)


def test_the_driver_answers_each_script_with_its_output_and_exit_code(tmp_path: Path) -> None:
    done = drive(request("echo one; echo oops >&2; exit 3", "T1")
                 + request("printf 'no newline'", "T2"), tmp_path)

    assert done.stdout == b"READY\none\n\nT1 3\nno newline\nT2 0\n"
    assert done.stderr == b"oops\n\nT1\n\nT2\n"


def test_nothing_a_script_sets_reaches_the_next_one(tmp_path: Path) -> None:
    (tmp_path / "elsewhere").mkdir()
    done = drive(request("cd elsewhere; X=set; umask 077", "T1")
                 + request('pwd; echo "${X:-unset}"; umask', "T2"), tmp_path)

    lines = done.stdout.decode().splitlines()
    assert lines[lines.index("T1 0") + 1:] == [str(tmp_path), "unset", "0022", "", "T2 0"]


def test_scripts_read_nothing_of_the_requests_after_them(tmp_path: Path) -> None:
    done = drive(request("cat; echo read-done", "T1") + request("echo second", "T2"), tmp_path)

    assert done.stdout == b"READY\nread-done\n\nT1 0\nsecond\n\nT2 0\n"


def test_a_script_cut_short_by_a_lost_connection_runs_nothing(tmp_path: Path) -> None:
    whole = request(f"touch {tmp_path}/first-half\necho never\ntouch {tmp_path}/second-half", "T1")

    drive(whole[:-4], tmp_path)  # the closing brace never arrives

    assert not (tmp_path / "first-half").exists()


def test_an_answer_is_complete_only_with_both_marks() -> None:
    assert answered(b"out\n\nTOK 0\n", b"", b"TOK") is None
    assert answered(b"out\n", b"\nTOK\n", b"TOK") is None
    assert answered(b"out\n\nTOK 0", b"\nTOK\n", b"TOK") is None
    assert answered(b"out\n\nTOK 7\n", b"err\n\nTOK\n", b"TOK") == (Result("out\n", "err\n", 7),
                                                                     False)


def test_output_mentioning_another_token_is_kept_as_output() -> None:
    assert answered(b"OTHER 1\n\nTOK 0\n", b"\nTOK\n", b"TOK") == (Result("OTHER 1\n", "", 0),
                                                                 False)


def test_long_output_is_answered_whole_and_only_its_tail_is_searched() -> None:
    long = b"x" * (3 * MARK_WINDOW)
    found = answered(long + b"\n\nTOK 0\n", b"\nTOK\n", b"TOK")

    assert found is not None and found[0].stdout == long.decode() + "\n"
    assert answered(b"\nTOK 0\n" + long, b"\nTOK\n", b"TOK") is None  # past the window


def test_the_driver_carries_output_larger_than_a_pipe_buffer(tmp_path: Path) -> None:
    done = drive(request("head -c 300000 /dev/zero | tr '\\0' x", "T1"), tmp_path)

    found = answered(done.stdout.removeprefix(b"READY\n"), done.stderr, b"T1")
    assert found is not None and found[0].stdout == "x" * 300000


def test_output_after_the_mark_is_a_stray_writer_that_retires_the_shell() -> None:
    found = answered(b"out\n\nTOK 0\nlate line\n", b"\nTOK\n", b"TOK")

    assert found == (Result("out\n", "", 0), True)
    assert answered(b"\nTOK 0\n", b"\nTOK\nlate\n", b"TOK") == (Result("", "", 0), True)


@pytest.mark.parametrize(("user", "password", "keeps"), [
    ("root", None, True), ("admin", None, True), ("admin", "s3cret", False),
    ("root", "s3cret", True)])
def test_a_root_shell_is_kept_only_where_no_sudo_password_guards_root(
        user: str, password: str | None, keeps: bool) -> None:
    ssh = SshSettings(identity_file=None, known_hosts=Path("/dev/null"), trust_on_first_use=False,
                      jump_host=None, connect_timeout=10.0, command_timeout=60.0,
                      sudo_password=Secret(password) if password else None)
    config = HostConfig("web1", "192.0.2.10", 22, user, (), (), {}, ssh)
    assert may_keep_root_shell(config) is keeps


def test_the_shell_starts_through_sudo_unless_logged_in_as_root() -> None:
    assert start_command("admin", "R").startswith("sudo -n -H /bin/sh -c ")
    assert start_command("root", "R").startswith("/bin/sh -c ")
    assert start_command("root", "R").endswith(" provisioner-root-shell R")
