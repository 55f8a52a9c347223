"""PostgreSQL for steps: SQL run as ``postgres`` on its stdin, SQL probes batched per round trip.

Every role that talks to the local PostgreSQL (postgres, pgbouncer, backups) does it the same
way: ``psql`` as the ``postgres`` superuser over the Unix socket (peer authentication, no
password anywhere), the SQL on stdin (commands.with_stdin: never in argv, never in a file), no
psqlrc, ``ON_ERROR_STOP``, unaligned tuples. Which server: Debian's cluster layout, the highest
major version installed under /usr/lib/postgresql and its cluster ``main``; the port is the one
the running postmaster wrote into ``postmaster.pid`` (builtins only: a probe pays no process
start to find it), so a port changed in the configuration but not yet restarted is still
reached where the server listens.

Probes: ``grouped_sql_probe(query, database)`` is one item of the ``SQL`` ProbeGroup. Every item
of a round trip, of every role, goes to ONE psql run: the items of one database run in a row,
each followed by a marker carrying psql's ``:ERROR`` and ``:SQLSTATE``; another database is
reached with ``\\connect`` after checking in ``pg_database`` that it exists. Every session is
``default_transaction_read_only``, so a probe cannot write even by mistake. ``parse`` gives a
SqlAnswer whose ``state`` tells apart "PostgreSQL is not installed" (``absent``), "installed
but not running or not answering" (``down``), "this database does not exist" (``no-database``),
"the query failed" (``failed``, with the server's message) and ``ok`` with the rows.

One item is one SQL statement without a trailing semicolon and without psql meta-commands (a
line starting with a backslash is refused); values are quoted with provisioner.sql. A row is a
tuple of text fields (NULL reads as the empty string: coalesce where it matters).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from provisioner.commands import quote, run_as, with_stdin
from provisioner.secrets.values import Secret
from provisioner.sql import quote_literal
from provisioner.step import GroupedProbe, ProbeGroup, ProbeUnreadable

#: Debian's default cluster name (pg_createcluster's, and the ``main`` of postgresql@15-main).
CLUSTER = "main"
#: Field separator of probe rows (ASCII unit separator): no name or setting we read holds it.
FIELD = "\x1f"
#: Lines a probe prints around psql's rows; rows end with NUL, so a marker starts a line.
_MARK = "@@pg-"
#: Database names these helpers connect to: what a psql meta-command argument keeps intact.
_DATABASE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,62}$")

#: Sets $pgver (the highest major version with a server binary), $pgbin, $pgdata, and, when the
#: postmaster runs, $pgpid and $pgport from its postmaster.pid (lines 1 and 4). Builtins only.
CLUSTER_SHELL = (
    "pgver=; for pgcand in /usr/lib/postgresql/*/bin/postgres; do [ -x \"$pgcand\" ] || "
    "continue; pgv=${pgcand#/usr/lib/postgresql/}; pgv=${pgv%%/*}; "
    "if [ -z \"$pgver\" ] || [ \"${pgv%%.*}\" -gt \"${pgver%%.*}\" ] 2>/dev/null; then "
    "pgver=$pgv; fi; done; pgbin=/usr/lib/postgresql/$pgver/bin; "
    f"pgdata=/var/lib/postgresql/$pgver/{CLUSTER}; pgpid=; pgport=; "
    "if [ -n \"$pgver\" ] && [ -f \"$pgdata/postmaster.pid\" ]; then "
    "{ read -r pgpid; read -r _; read -r _; read -r pgport; } < \"$pgdata/postmaster.pid\"; fi"
)
#: psql as the probes and actions run it: no psqlrc, quiet (no command tags), unaligned tuples.
_PSQL = ("psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1")
#: What a session that carries a password verifier sets first: nothing of it reaches the log,
#: not the statement (log_statement = ddl would log ALTER ROLE), not its duration's statement,
#: not an error's statement or message; and psql shows no statement excerpt on an error.
QUIET_LOG = ("\\set VERBOSITY terse\nSET log_statement = 'none';\n"
             "SET log_min_duration_statement = -1;\nSET log_min_error_statement = 'panic';\n"
             "SET log_min_messages = 'panic';\n"
             # pg_stat_statements keeps utility statements' text (ALTER ROLE ... PASSWORD with
             # its verifier) unless told not to; without the module this only sets a
             # placeholder, which PostgreSQL allows for any name with a dot
             "SET pg_stat_statements.track_utility = off;\n")
#: What a session that changes the inventory's objects sets first: a lock held by another
#: transaction (an open ALTER ROLE, a long transaction on the role's row) fails the statement
#: after 10 s, naming the sessions holding transactions open, instead of hanging the run.
SESSION_LIMITS = "SET lock_timeout = '10s';\nSET statement_timeout = '10min';\n"
#: On a lock timeout: the sessions with a transaction open, oldest first (no query text: it
#: may hold a secret).
_HOLDERS_SQL = (
    "SELECT 'pid ' || pid || ', application ' || coalesce(nullif(application_name, ''), '-') "
    "|| ', user ' || coalesce(usename, '-') || ', transaction started ' || xact_start || "
    "', ' || coalesce(state, '-') FROM pg_stat_activity WHERE xact_start IS NOT NULL AND pid "
    "<> pg_backend_pid() ORDER BY xact_start")


def check_database_name(database: str) -> str:
    """``database`` when psql's ``-d`` and ``\\connect`` take it as it is, else ValueError."""
    if not _DATABASE.fullmatch(database):
        raise ValueError(f"database name {database!r}: these helpers connect only to names of "
                         "letters, digits, '_', '.' and '-' (at most 63)")
    return database


def psql_command(sql: str | Secret | Sequence[str | Secret], *, database: str = "postgres",
                 quiet_log: bool = False, bounded: bool = False) -> str:
    """Shell running ``sql`` (one text, or parts joined, Secrets revealed into the payload only)
    as ``postgres`` in ``database`` of the local cluster, stopping at the first error.

    The SQL travels on psql's stdin (with_stdin). ``quiet_log`` first turns statement and error
    logging off for this session (QUIET_LOG): use it for anything holding a secret, a
    password's SCRAM verifier included. Fails with a clear message when PostgreSQL is not
    installed or not running. No transaction is opened: CREATE DATABASE cannot run in one;
    send BEGIN/COMMIT in the SQL where the statements must go together.
    """
    parts = [sql] if isinstance(sql, str | Secret) else list(sql)
    payload = ([QUIET_LOG] if quiet_log else []) + ([SESSION_LIMITS] if bounded else [])
    psql = run_as("postgres", *_PSQL, "-d", check_database_name(database))
    run = with_stdin(psql, *payload, *parts)
    if bounded:
        run = _naming_lock_holders(run)
    return (f"( {CLUSTER_SHELL}\n"
            "if [ -z \"$pgver\" ]; then echo 'PostgreSQL is not installed "
            "(no /usr/lib/postgresql/*/bin/postgres)' >&2; exit 1; fi\n"
            "if [ -z \"$pgport\" ]; then echo \"PostgreSQL $pgver is not running (no "
            "$pgdata/postmaster.pid)\" >&2; exit 1; fi\n"
            "PGPORT=$pgport PGAPPNAME=provisioner; export PGPORT PGAPPNAME\n"
            f"{run} )")


def _naming_lock_holders(run: str) -> str:
    """``run`` with its errors passed on, followed on a lock timeout by who holds transactions
    open (pg_stat_activity): the one to end or wait for."""
    holders = run_as("postgres", *_PSQL, "-d", "postgres", "-c", _HOLDERS_SQL)
    return (f"{{ pgerr=$( {{ {run}\n}} 2>&1 >&3 ); pgrc=$?; }} 3>&1\n"
            "[ -z \"$pgerr\" ] || printf '%s\\n' \"$pgerr\" >&2\n"
            "if [ \"$pgrc\" -ne 0 ] && printf '%s' \"$pgerr\" | grep -q 'lock timeout'; then\n"
            "  echo 'waited 10 s for a lock; sessions holding a transaction open, oldest "
            "first:' >&2\n"
            f"  {holders} >&2\nfi\n"
            "exit \"$pgrc\"")


@dataclass(frozen=True)
class SqlAnswer:
    """One probe's answer. ``state``: ok, failed, no-database, down or absent."""

    state: str
    rows: tuple[tuple[str, ...], ...] = ()
    #: psql's stderr (the server's message) when the state is not ok; may hold other items'.
    error: str = ""
    sqlstate: str = ""
    #: The cluster found: major version, and the running postmaster's port and PID.
    version: str = ""
    port: str = ""
    pid: str = ""

    def require(self, what: str) -> tuple[tuple[str, ...], ...]:
        """The rows, or ProbeUnreadable saying why there are none (``what`` names the reading)."""
        if self.state == "ok":
            return self.rows
        if self.state == "absent":
            raise ProbeUnreadable(f"cannot read {what}: PostgreSQL is not installed")
        if self.state == "down":
            reason = f": {self.error.strip()}" if self.error.strip() else ""
            raise ProbeUnreadable(f"cannot read {what}: PostgreSQL {self.version} is not "
                                  f"running or not answering{reason}")
        if self.state == "no-database":
            raise ProbeUnreadable(f"cannot read {what}: its database does not exist yet")
        raise ProbeUnreadable(f"reading {what} failed (SQLSTATE {self.sqlstate or '?'}): "
                              f"{self.error.strip() or 'psql stopped before answering'}")


def _item(query: str, database: str) -> str:
    lines = query.strip().rstrip(";").splitlines()
    if any(line.lstrip().startswith("\\") for line in lines):
        raise ValueError("an SQL probe cannot hold a psql meta-command (a line starting with "
                         "a backslash)")
    return f"{check_database_name(database)}\n" + "\n".join(lines)


def build_sql_probes(items: Sequence[str]) -> str:
    """One read-only shell snippet answering every item (``database\\nquery``) in one psql run."""
    by_database: dict[str, list[tuple[int, str]]] = {}
    for index, item in enumerate(items):
        database, _, query = item.partition("\n")
        by_database.setdefault(database, []).append((index, query))
    script = ["SET default_transaction_read_only = on;"]
    for database, queries in by_database.items():
        script += [f"SELECT count(*) > 0 AS present FROM pg_database WHERE datname = "
                   f"{quote_literal(database)} \\gset pgprobe_",
                   "\\if :pgprobe_present", f'\\connect "{database}"',
                   "SET default_transaction_read_only = on;"]
        for index, query in queries:
            script += [f"{query};", f"\\echo {_MARK}end {index} :ERROR :SQLSTATE"]
        script += ["\\else", *(f"\\echo {_MARK}nodb {index}" for index, _ in queries),
                   "\\endif"]
    psql = run_as("postgres", *_PSQL[:-2], "-F", FIELD, "--record-separator-zero", "-d",
                  "postgres")
    return (f"{CLUSTER_SHELL}\n"
            f"if [ -z \"$pgver\" ] || [ ! -x /usr/bin/psql ]; then echo {_MARK}absent; "
            "exit 0; fi\n"
            f"echo \"{_MARK}cluster $pgver $pgport $pgpid\"\n"
            f"if [ -z \"$pgport\" ]; then echo {_MARK}down; exit 0; fi\n"
            "PGPORT=$pgport PGAPPNAME=provisioner; export PGPORT PGAPPNAME\nexec 3>&1\n"
            f"pgerr=$( {{ {with_stdin(psql, chr(10).join(script) + chr(10))}; "
            f"echo \"{_MARK}exit $?\"; }} 2>&1 1>&3 )\n"
            f"printf '%s\\n%s' {quote(_MARK + 'stderr')} \"$pgerr\"")


_MARKER = re.compile(r"@@pg-(end|nodb) (\d+)(?: (\S+) (\S+))?\n")


def _markers(text: str) -> list[re.Match[str]]:
    """The item markers, each at a line's or a row's start (a value cannot forge one there
    unless it holds a newline followed by the marker text)."""
    return [match for match in _MARKER.finditer(text)
            if match.start() == 0 or text[match.start() - 1] in "\n\0"]


def _rows(text: str) -> tuple[tuple[str, ...], ...]:
    records = text.split("\0")
    return tuple(tuple(record.split(FIELD)) for record in records[:-1])


def parse_sql_probes(output: str, count: int) -> list[SqlAnswer]:
    """build_sql_probes output -> one SqlAnswer per item, in order."""
    head, _, rest = output.partition("\n")
    if head == f"{_MARK}absent":
        return [SqlAnswer("absent")] * count
    words = head.split(" ")
    version, port, pid = [*words, "", "", ""][1:4] if words[0] == f"{_MARK}cluster" \
        else ("", "", "")
    body, _, error = rest.partition(f"{_MARK}stderr\n")
    failed = SqlAnswer("failed", error=error, version=version, port=port, pid=pid)
    exit_code = re.search(r"(?:^|[\n\0])@@pg-exit (\d+)\n", body)
    if body.startswith(f"{_MARK}down") or (exit_code and exit_code.group(1) == "2"
                                           and not _markers(body)):
        return [replace(failed, state="down")] * count
    answers = [failed] * count
    position = 0
    for match in _markers(body):
        index = int(match.group(2))
        if index >= count:
            continue
        if match.group(1) == "nodb":
            answers[index] = replace(failed, state="no-database", error="")
        elif match.group(3) == "false":
            answers[index] = replace(failed, state="ok", error="",
                                     rows=_rows(body[position:match.start()]))
        else:
            answers[index] = replace(failed, sqlstate=match.group(4) or "")
        position = match.end()
    return answers


def render_answer(answer: SqlAnswer) -> str:
    """An answer in the format of a one-item probe's output (what ``parse`` reads)."""
    if answer.state == "absent":
        return f"{_MARK}absent\n"
    head = f"{_MARK}cluster {answer.version} {answer.port} {answer.pid}\n"
    if answer.state == "down":
        return f"{head}{_MARK}down\n{_MARK}stderr\n{answer.error}"
    if answer.state == "no-database":
        body = f"{_MARK}nodb 0\n"
    elif answer.state == "ok":
        body = "".join(FIELD.join(row) + "\0" for row in answer.rows) + \
            f"{_MARK}end 0 false 00000\n"
    else:
        body = f"{_MARK}end 0 true {answer.sqlstate or 'XX000'}\n"
    return f"{head}{body}{_MARK}exit 0\n{_MARK}stderr\n{answer.error}"


def split_sql_probes(output: str, items: Sequence[str]) -> Mapping[str, str]:
    """build_sql_probes output -> per item, text in the format of its own one-item probe."""
    answers = parse_sql_probes(output, len(items))
    return {item: render_answer(answer) for item, answer in zip(items, answers, strict=True)}


#: SQL probes answered together: every role's queries of a round trip in one psql run.
SQL = ProbeGroup("postgres-sql", build_sql_probes, split_sql_probes)


def sql_probe(query: str, database: str = "postgres") -> str:
    """The read-only shell answering one query alone (a Step's ``probe``)."""
    return build_sql_probes([_item(query, database)])


def grouped_sql_probe(query: str, database: str = "postgres") -> GroupedProbe:
    """The same query as an item of SQL (a Step's ``grouped``: pass sql_probe as its probe)."""
    return GroupedProbe(SQL, _item(query, database))


def parse(output: str) -> SqlAnswer:
    """A one-item probe's output (sql_probe's, or a SQL group's split) -> its SqlAnswer."""
    return parse_sql_probes(output, 1)[0]
