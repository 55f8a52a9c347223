"""SCRAM-SHA-256 verifiers: the format and keys PostgreSQL stores, checked against its own."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from provisioner.secrets.scram import parse_verifier, scram_matches, scram_verifier
from provisioner.sql import quote_identifier, quote_literal
from tests.unit.throwaway_postgres import Server, throwaway_server

#: Made by PostgreSQL 15 (CREATE ROLE ... PASSWORD '<password>'; SELECT rolpassword).
MADE_BY_POSTGRESQL = {
    "pencil": "SCRAM-SHA-256$4096:v9t6huE3MUZFsWDUSQ6IEA==$92ewE8zsBdV9gfco101Wf6RQBmYvbU+mepQ9"
              "TRc984c=:IgA0zsFjRgvRfJ4LqtGJou8jng5qhf4E1rLovNfk9M4=",
    "pässwörd ünïcode": "SCRAM-SHA-256$4096:WnlNJY7ynaR5uk7Z8WRwMQ==$gqDx3h4COKEBIPs4aYphywaCK"
                        "ldderfq0KSqR/cZqpU=:DkdgWjn8I4fb/Od3WW1AxmPia1od++uLZJKvItEpdtw=",
}


@pytest.mark.parametrize("password", list(MADE_BY_POSTGRESQL))
def test_a_verifier_postgresql_made_matches_its_password(password: str) -> None:
    assert scram_matches(MADE_BY_POSTGRESQL[password], password)


def test_a_verifier_does_not_match_another_password() -> None:
    assert not scram_matches(MADE_BY_POSTGRESQL["pencil"], "pencil ")


def test_our_verifier_with_postgresqls_salt_is_postgresqls_verifier() -> None:
    iterations, salt, _, _ = parse_verifier(MADE_BY_POSTGRESQL["pencil"]) or (0, b"", b"", b"")

    assert scram_verifier("pencil", salt=salt, iterations=iterations) == \
        MADE_BY_POSTGRESQL["pencil"]


def test_each_verifier_gets_a_fresh_salt_and_still_matches() -> None:
    first, second = scram_verifier("same"), scram_verifier("same")

    assert first != second
    assert scram_matches(first, "same") and scram_matches(second, "same")


@pytest.mark.parametrize("stored", [
    "", "md5" + "0" * 32, "SCRAM-SHA-256$", "SCRAM-SHA-256$4096:c2FsdA==$abc:def",
    "SCRAM-SHA-256$x:c2FsdA==$" + "A" * 44 + ":" + "A" * 44, "SCRAM-SHA-1$4096:a$b:c",
])
def test_what_is_not_a_scram_verifier_matches_no_password(stored: str) -> None:
    assert not scram_matches(stored, "")
    assert parse_verifier(stored) is None


# --- against a real server, where this machine has one ----------------------------------------

@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    with throwaway_server() as started:
        yield started


PASSWORDS = ["plain-Password-123", "it's \"quoted\" \\ and $$", "ünïcødé ✓ 密码", "Ⅸ ﬁ"]


@pytest.mark.parametrize("password", PASSWORDS)
def test_a_verifier_the_server_makes_matches_the_password(server: Server, password: str) -> None:
    role = f"made_{PASSWORDS.index(password)}"
    server.rows(f"CREATE ROLE {quote_identifier(role)} PASSWORD {quote_literal(password)};")

    stored = server.rows(f"SELECT rolpassword FROM pg_authid WHERE rolname = '{role}';")[0]

    assert scram_matches(stored, password)


@pytest.mark.parametrize("password", PASSWORDS)
def test_a_role_given_our_verifier_logs_in_with_the_password_only(server: Server,
                                                                  password: str) -> None:
    role = f"sent_{PASSWORDS.index(password)}"
    verifier = scram_verifier(password)
    server.rows(f"CREATE ROLE {role} LOGIN PASSWORD {quote_literal(verifier)};")

    stored = server.rows(f"SELECT rolpassword FROM pg_authid WHERE rolname = '{role}';")[0]
    good = server.run_sql("SELECT current_user;", user=role, password=password)
    wrong = server.run_sql("SELECT current_user;", user=role, password=password + "x")

    assert stored == verifier
    assert (good.returncode, good.stdout.strip()) == (0, role)
    assert wrong.returncode != 0 and "password authentication failed" in wrong.stderr
