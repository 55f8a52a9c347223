"""Command text for the host: another user's commands, stdin payloads, and the SQL quoted into them.

Each piece is run through the real parser it is written for where one is here: /bin/sh for the
shell text (fed on its stdin, as the host's root shell gets it), and a throwaway PostgreSQL
server for the SQL when this machine has PostgreSQL; otherwise the SQL grammar's quoting rules
are checked precisely.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from provisioner.commands import join, run_as, with_stdin
from provisioner.secrets.values import Secret
from provisioner.sql import (
    MAX_IDENTIFIER_BYTES,
    quote_identifier,
    quote_literal,
    quote_secret_literal,
)
from tests.unit.throwaway_postgres import Server, throwaway_server

#: Text that breaks naive quoting somewhere: shell, printf formats, SQL, psql, here-documents.
HOSTILE = [
    "plain",
    "",
    "it's",
    "''",
    'say "hi"',
    "back\\slash\\",
    "\\'; DROP TABLE users; --",
    "'; SELECT 'injected",
    "$$ dollar $tag$ quoted $$",
    "$(touch /tmp/pwned) `id` ${HOME}",
    "%s %d %% \\n \\0",
    "-n",
    "line one\nline two\n",
    "meta\n\\q\n\\! touch /tmp/pwned\n",
    "EOF\nEOF",
    ":variable :'quoted' :\"ident\"",
    "tab\there\r\n",
    "ünïcødé ✓ 密码 🔑",
]

NOBODY = "nobody"
needs_root = pytest.mark.skipif(
    os.getuid() != 0 or shutil.which("runuser") is None,
    reason="switching users with runuser needs root and util-linux")


def run_sh(script: str, cwd: Path | None = None) -> subprocess.CompletedProcess[bytes]:
    """Run shell text the way the host's root shell does: as /bin/sh's stdin."""
    return subprocess.run(["/bin/sh", "-s"], input=script.encode(), capture_output=True,
                          cwd=cwd, timeout=30, check=False)


# --- with_stdin -------------------------------------------------------------------------------

@pytest.mark.parametrize("payload", HOSTILE)
def test_a_payload_reaches_the_commands_stdin_byte_for_byte(payload: str) -> None:
    done = run_sh(with_stdin("cat", payload))

    assert done.returncode == 0, done.stderr
    assert done.stdout == payload.encode()


def test_a_payload_larger_than_any_exec_argument_arrives_whole() -> None:
    payload = "x" * (300 << 10) + "end"  # Linux refuses an argv string over 128 KiB

    done = run_sh(with_stdin("wc -c", payload))

    assert done.stdout.strip() == str(len(payload)).encode()


def test_the_parts_of_a_payload_are_joined_without_separators() -> None:
    done = run_sh(with_stdin("cat", "ALTER ROLE x PASSWORD ", "'p'", ";\n"))

    assert done.stdout == b"ALTER ROLE x PASSWORD 'p';\n"


def test_a_secret_part_is_revealed_into_the_payload() -> None:
    secret = Secret("s3cr3t 'value'", "env:DB_PASSWORD")

    done = run_sh(with_stdin("cat", "password=", secret))

    assert done.stdout == b"password=s3cr3t 'value'"


def test_while_a_payload_is_on_its_way_no_process_argv_or_environment_holds_it(
        tmp_path: Path) -> None:
    marker = "MARKER-" + os.urandom(8).hex()
    payload = marker + "y" * (256 << 10) + marker  # more than a pipe holds: the writer waits
    scan = ("for f in /proc/[0-9]*/cmdline /proc/[0-9]*/environ; do cat \"$f\" 2>/dev/null; "
            "echo; done > scan; cat > received")
    done = run_sh(with_stdin(join("sh", "-c", scan), payload), cwd=tmp_path)

    assert done.returncode == 0, done.stderr
    assert (tmp_path / "received").read_text() == payload
    assert marker.encode() not in (tmp_path / "scan").read_bytes()


def test_the_command_line_exits_with_the_commands_status() -> None:
    assert run_sh(with_stdin("exit 3", "ignored")).returncode == 3


def test_a_payload_holding_a_nul_is_refused_without_repeating_it() -> None:
    with pytest.raises(ValueError, match="NUL") as raised:
        with_stdin("cat", "secret\0value")
    assert "secret" not in str(raised.value)


# --- run_as -----------------------------------------------------------------------------------

def test_run_as_execs_the_quoted_argv_through_runuser_from_the_root_directory() -> None:
    assert run_as("postgres", "psql", "-c", "SELECT 1") == (
        "( cd / && exec runuser -u postgres -- psql -c 'SELECT 1' )")


def test_run_as_starts_in_the_directory_it_is_given() -> None:
    assert run_as("app", "ls", directory="/srv/my app").startswith("( cd '/srv/my app' && ")


def test_run_as_quotes_the_user_name() -> None:
    assert "runuser -u 'a b' --" in run_as("a b", "true")


@needs_root
def test_run_as_runs_the_command_as_the_user_with_the_users_home() -> None:
    done = run_sh(run_as(NOBODY, "sh", "-c", 'id -un; echo "$HOME"'))

    assert done.returncode == 0, done.stderr
    assert done.stdout.decode().splitlines() == [NOBODY, pwd.getpwnam(NOBODY).pw_dir]


@needs_root
def test_run_as_leaves_a_directory_the_user_cannot_enter_and_only_for_its_command(
        tmp_path: Path) -> None:
    private = tmp_path / "root-only"
    private.mkdir(mode=0o700)

    done = run_sh(f"{run_as(NOBODY, 'pwd')}\npwd", cwd=private)

    assert done.returncode == 0, done.stderr
    assert done.stdout.decode().splitlines() == ["/", str(private)]


@needs_root
def test_run_as_reads_a_payload_and_writes_as_the_user() -> None:
    with tempfile.TemporaryDirectory() as shared:
        Path(shared).chmod(0o1777)  # pytest's own temporary directories are root's alone
        target = Path(shared) / "out"

        done = run_sh(with_stdin(run_as(NOBODY, "sh", "-c", f"cat > {target}"), "from stdin\n"))

        assert done.returncode == 0, done.stderr
        assert target.read_text() == "from stdin\n"
        assert pwd.getpwuid(target.stat().st_uid).pw_name == NOBODY


# --- SQL quoting: the grammar's rules ---------------------------------------------------------

def read_quoted(text: str, mark: str) -> tuple[str, str]:
    """SQL's rule for a quoted token: it opens with ``mark``, a doubled mark stands for one,
    a single mark closes it. Returns the value and whatever follows the closing mark."""
    assert text.startswith(mark)
    value, index = [], 1
    while True:
        found = text.index(mark, index)
        value.append(text[index:found])
        if text[found + 1:found + 2] == mark:
            value.append(mark)
            index = found + 2
        else:
            return "".join(value), text[found + 1:]


@pytest.mark.parametrize("value", HOSTILE)
def test_a_literal_is_one_string_constant_holding_exactly_the_value(value: str) -> None:
    assert read_quoted(quote_literal(value), "'") == (value, "")


@pytest.mark.parametrize("name", [name for name in HOSTILE if name])
def test_an_identifier_is_one_quoted_name_holding_exactly_the_name(name: str) -> None:
    assert read_quoted(quote_identifier(name), '"') == (name, "")


@pytest.mark.parametrize(("value", "literal"), [
    ("it's", "'it''s'"),
    ("a\\b", "'a\\b'"),
    ("$$", "'$$'"),
    ("two\nlines", "'two\nlines'"),
    ("", "''"),
])
def test_a_literal_doubles_single_quotes_and_keeps_all_else(value: str, literal: str) -> None:
    assert quote_literal(value) == literal


@pytest.mark.parametrize(("name", "identifier"), [
    ("App", '"App"'),
    ('a"b', '"a""b"'),
    ("select", '"select"'),
    ("it's", '"it\'s"'),
])
def test_an_identifier_doubles_double_quotes_and_keeps_its_case(name: str,
                                                                identifier: str) -> None:
    assert quote_identifier(name) == identifier


def test_a_literal_holding_a_nul_is_refused_without_repeating_it() -> None:
    with pytest.raises(ValueError, match="NUL") as raised:
        quote_literal("hunter2\0")
    assert "hunter2" not in str(raised.value)


@pytest.mark.parametrize("name", ["", "a\0b"], ids=["empty", "nul"])
def test_an_empty_or_nul_holding_identifier_is_refused(name: str) -> None:
    with pytest.raises(ValueError, match="identifier"):
        quote_identifier(name)


def test_an_identifier_may_have_63_bytes_and_no_more() -> None:
    assert quote_identifier("€" * 21) == '"' + "€" * 21 + '"'  # 3 bytes each: 63
    with pytest.raises(ValueError, match=f"longer than {MAX_IDENTIFIER_BYTES} bytes"):
        quote_identifier("€" * 22)


def test_a_secret_literal_is_a_secret_holding_the_quoted_value() -> None:
    literal = quote_secret_literal(Secret("pa'ss", "env:DB_PASSWORD"))

    assert isinstance(literal, Secret)
    assert literal.reveal() == "'pa''ss'"
    assert str(literal) == "***" and literal.reference == "env:DB_PASSWORD"


def test_a_secret_holding_a_nul_is_refused_by_its_reference_only() -> None:
    with pytest.raises(ValueError, match="env:DB_PASSWORD") as raised:
        quote_secret_literal(Secret("hunter2\0", "env:DB_PASSWORD"))
    assert "hunter2" not in str(raised.value)


# --- SQL quoting: through a real PostgreSQL, where this machine has one ------------------------

@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    with throwaway_server() as started:
        yield started


def test_postgresql_reads_every_literal_back_as_its_value(server: Server) -> None:
    rows = server.rows("".join(f"SELECT to_json({quote_literal(value)}::text);\n"
                                 for value in HOSTILE))

    assert [json.loads(row) for row in rows] == HOSTILE


def test_postgresql_reads_every_identifier_back_as_its_name(server: Server) -> None:
    names = [name for name in HOSTILE if name] + ["€" * 21]
    rows = server.rows("".join(f"SELECT to_json(t) FROM (SELECT 1 AS {quote_identifier(name)})"
                                 " AS t;\n" for name in names))

    assert [next(iter(json.loads(row))) for row in rows] == names


def test_postgresql_reads_a_secret_literal_back_as_the_secret(server: Server) -> None:
    secret = Secret("p'a\\s$$s\nwörd", "env:DB_PASSWORD")

    rows = server.rows("SELECT to_json(" + quote_secret_literal(secret).reveal() + "::text);")

    assert json.loads(rows[0]) == secret.reveal()
