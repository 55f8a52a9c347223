"""ops.postgres: psql commands on stdin, and SQL probes answered in one psql run per round trip."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from provisioner.ops import postgres
from provisioner.ops.postgres import (
    SQL,
    SqlAnswer,
    grouped_sql_probe,
    parse,
    parse_sql_probes,
    psql_command,
    render_answer,
    split_sql_probes,
    sql_probe,
)
from provisioner.secrets.values import Secret
from provisioner.step import ProbeUnreadable

#: What build_sql_probes printed on a PostgreSQL 15 server for six items: a query with rows,
#: 1/0, a query in template1, one in a database that does not exist, a write (refused by the
#: read-only session) and a row whose values hold '|', NULL and a newline.
RECORDED = ("@@pg-cluster 15 55432 31542\nshared_buffers\x1f16384\x1f8kB\x00work_mem\x1f4096"
            "\x1fkB\x00@@pg-end 0 false 00000\n@@pg-end 1 true 22012\n@@pg-end 4 true 25006\n"
            "a|b\x1f\x1fx\ny\x00@@pg-end 5 false 00000\npostgres\x00template0\x00template1\x00"
            "@@pg-end 2 false 00000\n@@pg-nodb 3\n@@pg-exit 0\n@@pg-stderr\nERROR:  division "
            "by zero\nERROR:  cannot execute CREATE TABLE in a read-only transaction")


def test_psql_command_sends_the_sql_on_stdin_not_in_argv() -> None:
    command = psql_command("SELECT 'needle'")

    assert "printf '%s' 'SELECT '\"'\"'needle'\"'\"''" in command
    assert "runuser -u postgres -- psql -X -q -A -t -v ON_ERROR_STOP=1 -d postgres" in command


def test_psql_command_reveals_a_secret_only_into_the_payload() -> None:
    command = psql_command(["ALTER ROLE app PASSWORD ", Secret("'hunter2'")], quiet_log=True)

    assert command.count("hunter2") == 1
    assert command.index("printf") < command.index("hunter2") < command.index("| (")


def test_psql_command_with_quiet_log_turns_statement_and_error_logging_off_first() -> None:
    command = psql_command("SELECT 1", quiet_log=True)

    for setting in ("log_statement = '\"'\"'none", "log_min_duration_statement = -1",
                    "log_min_error_statement = '\"'\"'panic", "log_min_messages = "):
        assert command.index(setting) < command.index("SELECT 1")


def test_psql_command_refuses_a_database_name_psql_would_change() -> None:
    with pytest.raises(ValueError, match="database name"):
        psql_command("SELECT 1", database="a b")


def test_parse_sql_probes_reads_each_item_of_one_run() -> None:
    answers = parse_sql_probes(RECORDED, 6)

    assert [answer.state for answer in answers] == ["ok", "failed", "ok", "no-database",
                                                    "failed", "ok"]
    assert answers[0].rows == (("shared_buffers", "16384", "8kB"), ("work_mem", "4096", "kB"))
    assert answers[2].rows == (("postgres",), ("template0",), ("template1",))
    assert answers[5].rows == (("a|b", "", "x\ny"),)


def test_a_failed_item_carries_its_sqlstate_and_the_servers_message() -> None:
    answer = parse_sql_probes(RECORDED, 6)[1]

    assert answer.sqlstate == "22012"
    assert "division by zero" in answer.error


def test_the_cluster_found_comes_with_every_answer() -> None:
    answer = parse_sql_probes(RECORDED, 6)[3]

    assert (answer.version, answer.port, answer.pid) == ("15", "55432", "31542")


def test_split_gives_each_item_what_its_own_probe_would_print() -> None:
    items = [f"postgres\nSELECT {index}" for index in range(6)]

    split = split_sql_probes(RECORDED, items)

    assert [parse(split[item]) for item in items] == parse_sql_probes(RECORDED, 6)


def test_no_postgresql_installed_reads_absent() -> None:
    assert parse("@@pg-absent\n").state == "absent"


def test_a_cluster_without_a_running_postmaster_reads_down() -> None:
    answer = parse("@@pg-cluster 15  \n@@pg-down\n")

    assert (answer.state, answer.version) == ("down", "15")


def test_psql_failing_to_connect_reads_down_not_failed() -> None:
    output = ("@@pg-cluster 15 5432 99\n@@pg-exit 2\n@@pg-stderr\npsql: error: connection to "
              "server on socket \"/var/run/postgresql/.s.PGSQL.5432\" failed")

    assert parse(output).state == "down"


def test_an_item_psql_never_reached_reads_failed() -> None:
    output = "@@pg-cluster 15 5432 99\n@@pg-exit 2\n@@pg-end 0 false 00000\n@@pg-stderr\n"

    assert [answer.state for answer in parse_sql_probes(output, 2)] == ["ok", "failed"]


@pytest.mark.parametrize("answer", [
    SqlAnswer("ok", (("a", ""), ("b", "c")), version="15", port="5432", pid="7"),
    SqlAnswer("failed", error="ERROR:  boom", sqlstate="42P01", version="17"),
    SqlAnswer("no-database", version="15", port="5432", pid="7"),
    SqlAnswer("down", error="no socket", version="15"),
    SqlAnswer("absent"),
])
def test_render_answer_is_read_back_as_the_same_answer(answer: SqlAnswer) -> None:
    assert parse(render_answer(answer)) == answer


@pytest.mark.parametrize(("answer", "message"), [
    (SqlAnswer("absent"), "PostgreSQL is not installed"),
    (SqlAnswer("down", version="15"), "PostgreSQL 15 is not running"),
    (SqlAnswer("no-database"), "database does not exist"),
    (SqlAnswer("failed", error="ERROR:  boom", sqlstate="42P01"), "42P01.*boom"),
])
def test_require_says_why_there_are_no_rows(answer: SqlAnswer, message: str) -> None:
    with pytest.raises(ProbeUnreadable, match=message):
        answer.require("the roles")


def test_items_of_several_databases_go_to_one_psql_run() -> None:
    items = [grouped_sql_probe("SELECT 1", "app").item, grouped_sql_probe("SELECT 2").item,
             grouped_sql_probe("SELECT 3", "app").item]

    script = SQL.build(items)

    assert script.count("runuser") == 1
    assert script.count('\\connect "app"') == 1
    assert script.count("\\connect") == 2


def test_every_session_of_a_probe_is_read_only() -> None:
    script = sql_probe("SELECT 1", "app")

    assert script.count("SET default_transaction_read_only = on;") == 2


def test_a_probe_refuses_a_psql_meta_command() -> None:
    with pytest.raises(ValueError, match="meta-command"):
        sql_probe("SELECT 1\n\\! rm -rf /")



def test_a_session_holding_a_password_keeps_it_out_of_pg_stat_statements_too() -> None:
    # a placeholder without the module: SET of a dotted name is allowed whether it is loaded
    assert "SET pg_stat_statements.track_utility = off;" in postgres.QUIET_LOG


def test_object_sessions_give_up_on_a_lock_after_10_s_naming_who_holds_transactions(
        tmp_path: Path) -> None:
    fakes = tmp_path / "bin"
    fakes.mkdir()
    (fakes / "runuser").write_text("#!/bin/sh\nshift 3; exec \"$@\"\n")
    (fakes / "psql").write_text(
        "#!/bin/sh\ncase \"$*\" in *pg_stat_activity*)\n"
        "  echo 'pid 4242, application psql, user postgres, transaction started 2026-12-02 "
        "15:00:00+00, idle in transaction'; exit 0;; esac\n"
        "cat >/dev/null; echo 'ERROR:  canceling statement due to lock timeout' >&2; exit 3\n")
    for tool in fakes.iterdir():
        tool.chmod(0o755)
    command = postgres._naming_lock_holders(
        postgres.with_stdin(postgres.run_as("postgres", "psql", "-d", "postgres"),
                            postgres.SESSION_LIMITS, "ALTER ROLE app LOGIN"))

    done = subprocess.run(["sh", "-c", f"( {command} )"], capture_output=True, text=True,
                          env={**os.environ, "PATH": f"{fakes}:{os.environ['PATH']}"},
                          check=False)

    assert done.returncode == 3
    assert "canceling statement due to lock timeout" in done.stderr
    assert "sessions holding a transaction open, oldest first:\npid 4242, application psql" \
        in done.stderr
    assert "SET lock_timeout = '10s';" in postgres.SESSION_LIMITS
