"""PgBouncer's userlist: the server's own SCRAM verifiers, copied from pg_authid, never shown.

PgBouncer can log in to PostgreSQL with a client's SCRAM credentials only when its secret for
the user is the server's, byte for byte: "the SCRAM secrets are identical in PgBouncer and the
PostgreSQL server (same salt and iterations, not merely the same password)" (controls.md §7.2).
So the file is built from ``pg_authid.rolpassword`` and nothing is hashed here.

One SQL query, an item of the postgres ops' SQL group (the same psql run as every other SQL
probe of the round trip), reads the verifiers and the current file: the server, running as
postgres, reads the userlist (0640 root:postgres) with ``pg_read_binary_file`` and answers its
SHA-256 and the user names in it, which is what the decision compares and what a diff may show.
The verifiers themselves are handed back in ``Plan.secrets``, so the engine masks them in
everything it shows; the diff the step makes itself names users only.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from provisioner.change import unified_diff
from provisioner.commands import join, quote
from provisioner.host import Host
from provisioner.ops.file_writes import DesiredFile, write_file_action
from provisioner.ops.files import plan_file_attributes
from provisioner.ops.path_state import grouped_path_probe, parse_path_state, probe_path
from provisioner.ops.postgres import SqlAnswer, grouped_sql_probe, parse, sql_probe
from provisioner.secrets.scram import parse_verifier
from provisioner.secrets.values import Secret
from provisioner.sql import quote_literal
from provisioner.step import Plan, Probed, ProbeUnreadable, Refused, Step
from roles.pgbouncer.handlers import save_previous_command

USERLIST = "/etc/pgbouncer/userlist.txt"
#: PgBouncer runs as postgres and only reads the file; root alone may change it.
OWNER, GROUP, MODE = "root", "postgres", 0o640
#: Bytes of the file the server reads (every form of pg_read_binary_file that PostgreSQL 15
#: has with missing_ok takes a length); a userlist is a few hundred bytes a user.
READ_LIMIT = 1 << 24


@dataclass(frozen=True)
class UserlistState:
    """What the probe found: the file's SHA-256 (None: no file), the users in it, the verifiers."""

    sha256: str | None
    users: tuple[str, ...]
    verifiers: dict[str, str]


def userlist_query(users: Sequence[str], path: str = USERLIST) -> str:
    """One query: the current file's digest and user names, and each wanted role's verifier."""
    read = f"pg_read_binary_file({quote_literal(path)}, 0, {READ_LIMIT}, true)"
    wanted = ", ".join(quote_literal(user) for user in users) or "NULL"
    return (f"SELECT 'file', '', coalesce(encode(sha256({read}), 'hex'), '')\n"
            "UNION ALL SELECT 'user', substring(line from '^\"((?:[^\"]|\"\")*)\"'), ''\n"
            f"  FROM regexp_split_to_table(encode(coalesce({read}, "
            "''), 'escape'), E'\\n') AS line WHERE line LIKE '\"%'\n"
            "UNION ALL SELECT 'role', rolname, coalesce(rolpassword, '') FROM pg_authid\n"
            f"  WHERE rolname IN ({wanted})")


def parse_userlist_state(answer: SqlAnswer) -> UserlistState:
    """The query's rows -> UserlistState; ProbeUnreadable when PostgreSQL could not answer."""
    rows = answer.require(f"the SCRAM verifiers for {USERLIST}")
    digest = next((row[2] for row in rows if row[0] == "file"), "")
    users = tuple(row[1].replace('""', '"') for row in rows if row[0] == "user" and row[1])
    verifiers = {row[1]: row[2] for row in rows if row[0] == "role" and len(row) == 3}
    return UserlistState(digest or None, users, verifiers)


def userlist_content(users: Sequence[str], verifiers: dict[str, str]) -> str:
    """The file PgBouncer reads: ``"name" "verifier"`` per user, in the inventory's order."""
    return "".join(f'"{user}" "{verifiers[user]}"\n' for user in users)


def check_verifiers(users: Sequence[str], verifiers: dict[str, str]) -> None:
    """ProbeUnreadable for roles with nothing to copy yet, Refused for a verifier that is not
    SCRAM (an md5 hash cannot log in under auth_type scram-sha-256)."""
    missing = [user for user in users if not verifiers.get(user)]
    if missing:
        raise ProbeUnreadable(
            f"would change after the server has a password for {', '.join(missing)}: the "
            "userlist copies each role's SCRAM verifier from pg_authid, and the role is missing "
            "or has no password there (the postgres role, run before this one, sets them)")
    not_scram = [user for user in users if parse_verifier(verifiers[user]) is None]
    if not_scram:
        raise Refused(f"role(s) {', '.join(not_scram)} have a password that is not a SCRAM-SHA-256"
                      " verifier in pg_authid (an md5 one?), which PgBouncer cannot use under "
                      "auth_type scram-sha-256: set the password again with password_encryption"
                      " = scram-sha-256 (the postgres role does when it sets it).")


def masked_diff(old_users: Sequence[str], new_users: Sequence[str]) -> str:
    """A diff of the userlist that names users only: every verifier shows as ***."""
    old = "".join(f'"{user}" "***"\n' for user in old_users)
    new = "".join(f'"{user}" "***"\n' for user in new_users)
    return unified_diff(USERLIST, old.encode(), new.encode())


def plan_userlist(state: UserlistState, users: Sequence[str], show_diff: bool) -> Plan:
    """Write the userlist unless it already holds exactly these users' verifiers; pure."""
    check_verifiers(users, state.verifiers)
    content = userlist_content(users, state.verifiers).encode()
    secrets = tuple(Secret(state.verifiers[user], f"SCRAM verifier of {user}") for user in users)
    if state.sha256 == hashlib.sha256(content).hexdigest():
        return Plan(f"holds the verifiers of {', '.join(users) or 'no user'}", secrets=secrets)
    if state.sha256 is None:
        reason = f"created with the verifiers of {', '.join(users) or 'no user'}"
    elif list(state.users) != list(users):
        reason = f"users {', '.join(state.users) or 'none'} -> {', '.join(users) or 'none'}"
    else:
        reason = "a verifier changed on the server"
    desired = DesiredFile(USERLIST, content, OWNER, GROUP, MODE)
    action = f"{save_previous_command(keep_existing=True)}\n{write_file_action(desired)}"
    return Plan(reason, action=action, secrets=secrets, all_or_nothing=True,
                diff=masked_diff(state.users, users) if show_diff else None)


def ensure_userlist(host: Host, users: Sequence[str], *, notify: Sequence[str] = ()) -> Step:
    """The userlist holding these roles' verifiers as the local server stores them."""
    query = userlist_query(users)
    show_diff = host.show_diff

    def decide(probed: Probed) -> Plan:
        return plan_userlist(parse_userlist_state(parse(probed.output)), users, show_diff)

    return Step(f"userlist {USERLIST} [controls §7.2]", sql_probe(query), decide, tuple(notify),
                grouped=grouped_sql_probe(query))


def ensure_userlist_attributes(host: Host) -> Step:
    """The userlist root:postgres 0640 (before its content step, whose probe the server can
    only answer when postgres may read the file); an absent file is the content step's."""
    def decide(probed: Probed) -> Plan:
        current = parse_path_state(probed.output)
        if current is None:
            return Plan("absent (the userlist step writes it)")
        if current.kind not in ("regular file", "regular empty file"):
            raise Refused(f"{USERLIST} is a {current.kind}, not a file: remove it, and the next "
                          "run writes the userlist")
        reasons = plan_file_attributes(current, OWNER, GROUP, MODE)
        if not reasons:
            return Plan("already as desired")
        action = (f"{join('chown', f'{OWNER}:{GROUP}', USERLIST)} && "
                  f"chmod {MODE:04o} {quote(USERLIST)}")
        return Plan(", ".join(reasons), action=action)

    return Step(f"owner and mode of {USERLIST}", probe_path(USERLIST), decide,
                grouped=grouped_path_probe(USERLIST))
