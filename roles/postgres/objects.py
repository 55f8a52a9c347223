"""Roles, databases, extensions and grants: each kind read with one query, created when missing.

Each kind is one step whose probe is one item of the SQL group (ops.postgres), so a converged
host reads all of them in the round trip and the psql run every other probe shares; extensions
and schema grants are per database, one item per database, still the same psql run. Nothing is
dropped or revoked: what the inventory stops listing stays (dropping data is not a decision a
provisioner makes for you).

Passwords: a role's password is a secret (a host secret read in this step's own probe, or a
controller secret). PostgreSQL gets only its SCRAM-SHA-256 verifier, in a session that first
turns statement and error logging off (ops.postgres.QUIET_LOG), through psql's stdin; a role
whose stored verifier still matches the password (scram_matches) is left alone.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from typing import Any

from provisioner.host import Host
from provisioner.ops.postgres import grouped_sql_probe, parse, psql_command, sql_probe
from provisioner.ops.secret_store import secret_reads_probe, secret_value, split_secret_reads
from provisioner.secrets.host_store import HostSecret
from provisioner.secrets.scram import scram_matches, scram_verifier
from provisioner.secrets.values import Secret
from provisioner.sql import quote_identifier, quote_literal
from provisioner.step import Plan, Probed, ProbeUnreadable, Refused, Step

ROLES_SQL = ("SELECT rolname, rolcanlogin::text, coalesce(rolpassword, '') FROM pg_authid "
             "ORDER BY rolname")
DATABASES_SQL = ("SELECT datname, pg_get_userbyid(datdba), pg_encoding_to_char(encoding), "
                 "datcollate FROM pg_database ORDER BY datname")
#: Installed extensions and those the host's packages ship (one query: the same probe item).
EXTENSIONS_SQL = ("SELECT extname, 'installed' FROM pg_extension UNION ALL SELECT name, "
                  "'available' FROM pg_available_extensions ORDER BY 1, 2")
DATABASE_GRANTS_SQL = ("SELECT d.datname, coalesce(r.rolname, 'PUBLIC'), a.privilege_type FROM "
                       "pg_database d, aclexplode(d.datacl) a LEFT JOIN pg_roles r ON "
                       "r.oid = a.grantee ORDER BY 1, 2, 3")
SCHEMA_GRANTS_SQL = ("SELECT n.nspname, coalesce(r.rolname, 'PUBLIC'), a.privilege_type FROM "
                     "pg_namespace n, aclexplode(n.nspacl) a LEFT JOIN pg_roles r ON "
                     "r.oid = a.grantee ORDER BY 1, 2, 3")


def _sql_step(label: str, query: str, database: str, decide: Any) -> Step:
    return Step(label, sql_probe(query, database), decide,
                grouped=grouped_sql_probe(query, database))


def plan_roles(rows: Sequence[tuple[str, ...]], wanted: Sequence[Mapping[str, Any]],
               passwords: Mapping[str, Secret]) -> Plan:
    """CREATE or ALTER each role that is missing, cannot log in as asked, or whose verifier does
    not match its password; pure but for the fresh salt of a new verifier."""
    current = {row[0]: row for row in rows if len(row) == 3}
    statements: list[str | Secret] = []
    reasons, shown = [], []
    for role in wanted:
        name, login = str(role["name"]), bool(role.get("login", True))
        password = passwords.get(name)
        row = current.get(name)
        verb = "CREATE" if row is None else "ALTER"
        changes = []
        if row is None or (row[1] == "true") != login:
            changes.append("LOGIN" if login else "NOLOGIN")
        if password is not None and (row is None or not scram_matches(row[2], password.reveal())):
            verifier = Secret(scram_verifier(password.reveal()))
            shown += [password, verifier]
            statements += [f"{verb} ROLE {quote_identifier(name)} {' '.join(changes)} PASSWORD ",
                           Secret(quote_literal(verifier.reveal())), ";\n"]
            reasons.append(f"{name} {'created' if row is None else 'updated'} (password set)")
        elif changes:
            statements.append(f"{verb} ROLE {quote_identifier(name)} {' '.join(changes)};\n")
            reasons.append(f"{name} {'created' if row is None else ', '.join(changes)}")
    if not statements:
        return Plan(f"{len(wanted)} roles as desired")
    return Plan("; ".join(reasons),
                action=psql_command(statements, quiet_log=True, bounded=True),
                secrets=tuple(shown))


def ensure_roles(host: Host, wanted: Sequence[Mapping[str, Any]]) -> Step:
    """The inventory's roles, with their passwords as SCRAM verifiers (one query for all)."""
    host_names = [role["password"].name for role in wanted
                  if isinstance(role.get("password"), HostSecret)]

    def decide(probed: Probed) -> Plan:
        own, reads = split_secret_reads(probed.output)
        passwords = {}
        for role in wanted:
            if role.get("password") is None:
                continue
            value = secret_value(role["password"], reads)
            if value is None:
                raise ProbeUnreadable(f"would change after the host secret "
                                      f"{role['password'].name} is generated")
            passwords[str(role["name"])] = value
        return plan_roles(parse(own).require("the roles"), wanted, passwords)

    label = "PostgreSQL roles " + ", ".join(str(role["name"]) for role in wanted)
    if host_names:
        probe = sql_probe(ROLES_SQL) + "\n" + secret_reads_probe(host_names)
        return Step(label, probe, decide)
    return _sql_step(label, ROLES_SQL, "postgres", decide)


def plan_databases(rows: Sequence[tuple[str, ...]], wanted: Sequence[Mapping[str, Any]]
                   ) -> Plan:
    """CREATE DATABASE for each one missing, ALTER ... OWNER for a wrong owner; a different
    encoding or locale is refused (changing one means a dump and a restore)."""
    current = {row[0]: row for row in rows if len(row) == 4}
    commands, reasons = [], []
    for database in wanted:
        name, owner = str(database["name"]), str(database.get("owner") or "postgres")
        encoding = str(database.get("encoding") or "UTF8")
        locale = str(database.get("locale") or "")
        row = current.get(name)
        if row is None:
            options = f" OWNER {quote_identifier(owner)} ENCODING {quote_literal(encoding)}"
            if locale:
                options += f" LOCALE {quote_literal(locale)}"
            commands.append(psql_command(f"CREATE DATABASE {quote_identifier(name)}{options} "
                                         "TEMPLATE template0", bounded=True))
            reasons.append(f"{name} created (owner {owner})")
            continue
        if row[2].upper() != encoding.upper().replace("-", "") or (locale and row[3] != locale):
            raise Refused(f"database {name} exists with encoding {row[2]} and locale {row[3]}, "
                          f"not {encoding} {locale or '(cluster default)'}: changing them needs a "
                          "dump and restore, which this role does not do on its own")
        if row[1] != owner:
            commands.append(psql_command(f"ALTER DATABASE {quote_identifier(name)} OWNER TO "
                                         f"{quote_identifier(owner)}", bounded=True))
            reasons.append(f"{name} owner {row[1]} -> {owner}")
    if not commands:
        return Plan(f"{len(wanted)} databases as desired")
    return Plan("; ".join(reasons), action=" && ".join(commands))


def ensure_databases(host: Host, wanted: Sequence[Mapping[str, Any]]) -> Step:
    def decide(probed: Probed) -> Plan:
        return plan_databases(parse(probed.output).require("the databases"), wanted)

    return _sql_step("PostgreSQL databases " + ", ".join(str(d["name"]) for d in wanted),
                     DATABASES_SQL, "postgres", decide)


def plan_extensions(rows: Sequence[tuple[str, ...]], database: str, extensions: Sequence[str]
                    ) -> Plan:
    """CREATE EXTENSION for each one missing; Refused, before any of them is created, when one
    is not available on the host (a typo, or a package not installed), naming close matches."""
    present = {row[0] for row in rows if len(row) == 2 and row[1] == "installed"}
    available = sorted({row[0] for row in rows if len(row) == 2})
    unknown = [name for name in extensions if name not in available]
    if unknown:
        hints = []
        for name in unknown:
            close = difflib.get_close_matches(name, available, n=3, cutoff=0.6)
            hints.append(f"{name} (did you mean {', '.join(close)}?)" if close else name)
        raise Refused(f"postgres_databases {database}: extension(s) {'; '.join(hints)} not "
                      "available on this host (pg_available_extensions); fix the name in the "
                      "inventory or install the package that ships it; nothing was created")
    missing = [name for name in extensions if name not in present]
    if not missing:
        return Plan(f"{', '.join(extensions)} present")
    sql = "".join(f"CREATE EXTENSION IF NOT EXISTS {quote_identifier(name)};\n"
                  for name in missing)
    return Plan(f"create {', '.join(missing)}",
                action=psql_command(sql, database=database, bounded=True))


def ensure_extensions(host: Host, database: str, extensions: Sequence[str]) -> Step:
    """These extensions in ``database`` (CREATE EXTENSION; the package ships them)."""
    def decide(probed: Probed) -> Plan:
        answer = parse(probed.output)
        if answer.state == "no-database":
            raise ProbeUnreadable(f"would change after database {database} is created")
        return plan_extensions(answer.require(f"the extensions of {database}"), database,
                               extensions)

    return _sql_step(f"PostgreSQL extensions in {database}: {', '.join(extensions)}",
                     EXTENSIONS_SQL, database, decide)


def missing_grants(rows: Sequence[tuple[str, ...]], wanted: Sequence[Mapping[str, Any]],
                   key: str) -> list[tuple[str, str, str]]:
    """(object, role, privilege) the inventory grants and the ACLs do not show; ``key`` is the
    grant's field naming the object (database or schema)."""
    held = {tuple(row) for row in rows if len(row) == 3}
    return [(str(grant[key]), str(grant["role"]), str(privilege).upper())
            for grant in wanted for privilege in grant["privileges"]
            if (str(grant[key]), str(grant["role"]), str(privilege).upper()) not in held]


def grant_sql(missing: Sequence[tuple[str, str, str]], kind: str) -> str:
    return "".join(f"GRANT {privilege} ON {kind} {quote_identifier(target)} TO "
                   f"{quote_identifier(role)};\n" for target, role, privilege in missing)


def ensure_database_grants(host: Host, wanted: Sequence[Mapping[str, Any]]) -> Step:
    def decide(probed: Probed) -> Plan:
        missing = missing_grants(parse(probed.output).require("database privileges"), wanted,
                                 "database")
        if not missing:
            return Plan(f"{len(wanted)} database grants held")
        return Plan("grant " + ", ".join(f"{p} on {t} to {r}" for t, r, p in missing),
                    action=psql_command(grant_sql(missing, "DATABASE"), bounded=True))

    return _sql_step("PostgreSQL database grants", DATABASE_GRANTS_SQL, "postgres", decide)


def ensure_schema_grants(host: Host, database: str, wanted: Sequence[Mapping[str, Any]]) -> Step:
    def decide(probed: Probed) -> Plan:
        answer = parse(probed.output)
        if answer.state == "no-database":
            raise ProbeUnreadable(f"would change after database {database} is created")
        missing = missing_grants(answer.require(f"schema privileges in {database}"), wanted,
                                 "schema")
        if not missing:
            return Plan(f"{len(wanted)} schema grants held")
        return Plan("grant " + ", ".join(f"{p} on schema {t} to {r}" for t, r, p in missing),
                    action=psql_command(grant_sql(missing, "SCHEMA"), database=database,
                                                bounded=True))

    return _sql_step(f"PostgreSQL schema grants in {database}", SCHEMA_GRANTS_SQL, database,
                     decide)
