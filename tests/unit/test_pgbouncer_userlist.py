"""PgBouncer's userlist: the server's verifiers copied as they are, masked in everything shown,
read in one query (proven against a real PostgreSQL where this machine has one)."""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from provisioner.ops.postgres import SQL, SqlAnswer, render_answer
from provisioner.secrets.scram import scram_verifier
from provisioner.step import Probed, ProbeUnreadable, Refused
from roles.pgbouncer.userlist import (
    UserlistState,
    ensure_userlist,
    ensure_userlist_attributes,
    parse_userlist_state,
    plan_userlist,
    userlist_content,
    userlist_query,
)
from tests.unit.fakes import make_host
from tests.unit.throwaway_postgres import Server, throwaway_server

APP = scram_verifier("app password", salt=b"0123456789abcdef")
WORKER = scram_verifier("worker password", salt=b"fedcba9876543210")


def state_for(content: str | None, users: tuple[str, ...] = (),
              verifiers: dict[str, str] | None = None) -> UserlistState:
    digest = None if content is None else hashlib.sha256(content.encode()).hexdigest()
    return UserlistState(digest, users, verifiers if verifiers is not None else {"app": APP})


def test_the_file_is_the_verifiers_as_the_server_stores_them() -> None:
    assert userlist_content(["app", "worker"], {"app": APP, "worker": WORKER}) == \
        f'"app" "{APP}"\n"worker" "{WORKER}"\n'


def test_a_missing_userlist_is_written_root_postgres_0640() -> None:
    plan = plan_userlist(state_for(None), ["app"], show_diff=False)
    assert plan.reason == "created with the verifiers of app"
    assert plan.action is not None and plan.all_or_nothing
    assert "chown root:postgres" in plan.action and "chmod 0640" in plan.action


def test_a_userlist_holding_the_same_verifiers_is_left_alone() -> None:
    plan = plan_userlist(state_for(f'"app" "{APP}"\n', ("app",)), ["app"], show_diff=False)
    assert plan.action is None
    assert plan.reason == "holds the verifiers of app"


def test_a_password_changed_on_the_server_rewrites_the_userlist() -> None:
    old = scram_verifier("old password")
    plan = plan_userlist(state_for(f'"app" "{old}"\n', ("app",)), ["app"], show_diff=False)
    assert plan.action is not None and plan.reason == "a verifier changed on the server"


def test_a_user_added_or_removed_is_named() -> None:
    plan = plan_userlist(state_for('"old" "x"\n', ("old",)), ["app"], show_diff=False)
    assert plan.reason == "users old -> app"


def test_the_verifiers_are_handed_to_the_engine_to_mask() -> None:
    plan = plan_userlist(state_for(None), ["app"], show_diff=True)
    assert [secret.reveal() for secret in plan.secrets] == [APP]


def test_the_diff_names_users_and_never_shows_a_verifier() -> None:
    plan = plan_userlist(state_for('"old" "x"\n', ("old",)), ["app"], show_diff=True)
    assert plan.diff is not None
    assert '-"old" "***"' in plan.diff and '+"app" "***"' in plan.diff
    assert APP not in plan.diff and "SCRAM" not in plan.diff


def test_the_action_carries_no_verifier_in_clear() -> None:
    plan = plan_userlist(state_for(None), ["app"], show_diff=False)
    assert APP not in (plan.action or "")


def test_a_role_without_a_verifier_would_change_after_the_server_has_its_password() -> None:
    with pytest.raises(ProbeUnreadable, match=r"^would change after the server has a password "
                                              r"for worker: the userlist copies"):
        plan_userlist(state_for(None, verifiers={"app": APP}), ["app", "worker"], False)


def test_an_md5_password_is_refused_with_how_to_set_it_again() -> None:
    with pytest.raises(Refused, match=r"role\(s\) app have a password that is not a "
                                      r"SCRAM-SHA-256 verifier.*password_encryption"):
        plan_userlist(state_for(None, verifiers={"app": "md5" + "0" * 32}), ["app"], False)


def test_no_users_make_an_empty_userlist() -> None:
    plan = plan_userlist(state_for(""), [], show_diff=False)
    assert plan.action is None


def test_the_userlist_step_is_one_item_of_the_sql_group() -> None:
    step = ensure_userlist(make_host(), ["app"], notify=["pgbouncer:reload"])
    assert step.grouped is not None and step.grouped.group is SQL
    assert step.notify == ("pgbouncer:reload",)


def test_the_step_decides_from_the_groups_answer_for_its_item() -> None:
    step = ensure_userlist(make_host(), ["app"])
    answer = SqlAnswer("ok", (("file", "", ""), ("role", "app", APP)), version="15")
    assert step.decide(Probed(render_answer(answer))).reason == "created with the verifiers of app"


def test_postgresql_not_running_is_unreadable_not_a_change() -> None:
    with pytest.raises(ProbeUnreadable, match="PostgreSQL 15 is not running"):
        parse_userlist_state(SqlAnswer("down", version="15"))


@pytest.mark.parametrize(("output", "reason", "action"), [
    ("absent\n", "absent (the userlist step writes it)", None),
    ("regular file|root|postgres|640|ab\n", "already as desired", None),
    ("regular file|postgres|postgres|640|ab\n", "owner postgres:postgres -> root:postgres",
     "chown root:postgres /etc/pgbouncer/userlist.txt && chmod 0640 "
     "/etc/pgbouncer/userlist.txt"),
])
def test_the_userlists_owner_and_mode_are_kept_root_postgres_0640(
        output: str, reason: str, action: str | None) -> None:
    plan = ensure_userlist_attributes(make_host()).decide(Probed(output))
    assert (plan.reason, plan.action) == (reason, action)


def test_a_directory_in_place_of_the_userlist_is_refused() -> None:
    with pytest.raises(Refused, match="is a directory, not a file"):
        ensure_userlist_attributes(make_host()).decide(Probed("directory|root|root|755|\n"))


# --- the query against a real server ----------------------------------------------------

@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    with throwaway_server() as started:
        started.rows(f"CREATE ROLE app LOGIN PASSWORD '{APP}'")
        started.rows("CREATE ROLE nopass LOGIN")
        yield started


@pytest.fixture()
def userlist_file() -> Iterator[Path]:
    """A userlist the server (postgres, when the tests run as root) can read."""
    directory = Path(tempfile.mkdtemp(prefix="provisioner-userlist-"))
    directory.chmod(0o755)
    path = directory / "userlist.txt"
    path.write_text(f'"app" "{APP}"\n"gone" "x"\n')
    path.chmod(0o644)
    yield path
    path.unlink(missing_ok=True)
    os.rmdir(directory)


def answer_from(server: Server, query: str) -> SqlAnswer:
    done = server.run_sql("\\set QUIET on\n\\pset fieldsep '\\037'\n\\pset recordsep_zero\n"
                          + query + ";")
    assert done.returncode == 0, done.stderr
    rows = tuple(tuple(record.split("\x1f")) for record in done.stdout.split("\0") if record)
    return SqlAnswer("ok", rows, version="15")


def test_the_query_reads_the_servers_verifier_and_the_files_digest_and_users(
        server: Server, userlist_file: Path) -> None:
    answer = answer_from(server, userlist_query(["app", "nopass", "ghost"], str(userlist_file)))
    state = parse_userlist_state(answer)
    assert state.verifiers == {"app": APP, "nopass": ""}
    assert state.sha256 == hashlib.sha256(userlist_file.read_bytes()).hexdigest()
    assert state.users == ("app", "gone")


def test_the_query_reads_a_missing_file_as_none(server: Server, userlist_file: Path) -> None:
    userlist_file.unlink()
    state = parse_userlist_state(answer_from(server, userlist_query(["app"],
                                                                    str(userlist_file))))
    assert (state.sha256, state.users) == (None, ())


def test_the_server_verifier_copied_to_the_file_needs_no_rewrite(server: Server,
                                                                 userlist_file: Path) -> None:
    userlist_file.write_text(f'"app" "{APP}"\n')
    state = parse_userlist_state(answer_from(server, userlist_query(["app"],
                                                                    str(userlist_file))))
    assert plan_userlist(state, ["app"], show_diff=False).action is None
