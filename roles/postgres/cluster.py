"""The cluster's configuration: drop-in and pg_hba.conf as one checked config set, then a reload.

The major version is read from the host in each probe (ops.postgres.CLUSTER_SHELL), so the paths
(/etc/postgresql/<ver>/main) are known only when a step decides: the config set's probe is
built for a placeholder version, which the shell fills in, and its plan for the version read.

Validation before activation: the config set stages the new drop-in and pg_hba.conf beside the
live tree and runs ``postgres -C data_directory`` with the staged tree at the live paths (a
private mount namespace, config_set.py). That parses postgresql.conf with every conf.d file
exactly as a start would and refuses a bad value (``work_mem = banana``, an out-of-range
``shared_buffers``) with the server's own message, before any file is replaced: the running
server never sees it. Which handler: the settings whose value changed, by their context as the
host's own server binary reports it (``postgres --describe-config``, no server needed): any
``postmaster`` one restarts, else a reload. Each handler then proves the result: the server
answers, pg_file_settings shows no error and every line of the drop-in applied, no setting
waits for a restart, pg_hba.conf has no bad line; else it fails with what the server says.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from provisioner.commands import run_as
from provisioner.host import Host
from provisioner.ops.config_set import (
    ConfigFile,
    ConfigSet,
    build_config_set,
    parse_config_set,
    plan_config_set,
    probe_config_set,
)
from provisioner.ops.postgres import (
    CLUSTER,
    CLUSTER_SHELL,
    grouped_sql_probe,
    parse,
    psql_command,
    sql_probe,
)
from provisioner.ops.systemd import parse_unit, plan_service
from provisioner.sql import quote_literal
from provisioner.step import Handler, Plan, Probed, ProbeUnreadable, Refused, Step
from roles.postgres.settings import (
    DROPIN_NAME,
    changed_names,
    parse_dropin,
    render_dropin,
    same_value,
)

RESTART = "postgresql:restart"
RELOAD = "postgresql:reload"
_PLACEHOLDER = "@PGVER@"
_VERSION = "pg-version "
_CONFIG = "pg-config\n"


@dataclass
class Applying:
    """What the config step decided this run, for the step that checks pg_settings after it."""

    changed: bool = False


def config_root(version: str) -> str:
    return f"/etc/postgresql/{version}/{CLUSTER}"


def dropin_path(version: str) -> str:
    return f"{config_root(version)}/conf.d/{DROPIN_NAME}"


def _config_set(version: str, settings: dict[str, str], hba: str) -> ConfigSet:
    root = config_root(version)
    check = run_as("postgres", f"/usr/lib/postgresql/{version}/bin/postgres", "-D", root, "-C",
                   "data_directory")
    return build_config_set(root, {
        dropin_path(version): ConfigFile(render_dropin(settings), "postgres", "postgres", 0o644),
        f"{root}/pg_hba.conf": ConfigFile(hba, "postgres", "postgres", 0o640)}, check)


def config_probe() -> str:
    """Read-only: the version, the restart-context names, then the config set's probe."""
    placeholder = _config_set(_PLACEHOLDER, {}, "")
    files = probe_config_set(placeholder, with_content=True).replace(_PLACEHOLDER, "${pgver}")
    return (f"{CLUSTER_SHELL}\nif [ -z \"$pgver\" ]; then exit 0; fi\n"
            f"echo \"{_VERSION}$pgver\"\n"
            "\"$pgbin/postgres\" --describe-config | "
            "awk -F '\\t' '$2 == \"postmaster\" { print \"pg-restart \" $1 }'\n"
            f"printf '{_CONFIG.strip()}\\n'\n{files}")


def read_version(output: str) -> str:
    """The major version the probe found; ProbeUnreadable before PostgreSQL is installed."""
    first = output.split("\n", 1)[0]
    if not first.startswith(_VERSION):
        raise ProbeUnreadable("PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/"
                              "postgres)")
    return first[len(_VERSION):].strip()


def plan_config(output: str, settings_for: Callable[[int], dict[str, str]], hba: str,
                show_diff: bool) -> Plan:
    """The config set's plan, notifying the restart when a postmaster setting changes."""
    version = read_version(output)
    head, marker, files = output.partition(_CONFIG)
    if not marker:
        raise ProbeUnreadable("the probe of PostgreSQL's configuration was cut off")
    restart_names = {line.split(" ", 1)[1] for line in head.splitlines()
                     if line.startswith("pg-restart ")}
    settings = settings_for(int(version.split(".")[0]))
    config = _config_set(version, settings, hba)
    state = parse_config_set(files, config)
    plan = plan_config_set(config, state, show_diff)
    if not plan.changes:
        return plan
    before = parse_dropin(state.contents.get(dropin_path(version), b"").decode(errors="replace"))
    restart = [name for name in changed_names(before, settings) if name in restart_names]
    if restart:
        return replace(plan, reason=f"{plan.reason}; restart for {', '.join(restart)}",
                       notify=(RESTART,))
    return replace(plan, reason=f"{plan.reason}; reload", notify=(RELOAD,))


def ensure_cluster_config(host: Host, settings_for: Callable[[int], dict[str, str]], hba: str,
                          applying: Applying) -> Step:
    """The drop-in and pg_hba.conf of the cluster, checked together, reload or restart."""
    show_diff = host.show_diff

    def decide(probed: Probed) -> Plan:
        plan = plan_config(probed.output, settings_for, hba, show_diff)
        applying.changed = plan.changes
        return plan

    return Step(f"PostgreSQL conf.d/{DROPIN_NAME} and pg_hba.conf [controls §6.1, §6.2]",
                config_probe(), decide, notify=(RESTART, RELOAD))


def ensure_cluster_running(host: Host) -> Step:
    """postgresql@<ver>-main active; Debian's generator enables it at boot from start.conf
    (enabled-runtime), and the postgresql umbrella unit is enabled by its own step."""
    def decide(probed: Probed) -> Plan:
        version = read_version(probed.output)
        unit = f"postgresql@{version}-{CLUSTER}.service"
        return plan_service(unit, parse_unit(probed.output.split("\n", 1)[1]), None, True)

    probe = (f"{CLUSTER_SHELL}\nif [ -z \"$pgver\" ]; then exit 0; fi\n"
             f"echo \"{_VERSION}$pgver\"\nsystemctl show -p LoadState -p UnitFileState -p "
             f"ActiveState -- \"postgresql@$pgver-{CLUSTER}.service\"")
    return Step("PostgreSQL cluster running", probe, decide)


def plan_in_effect(rows: tuple[tuple[str, ...], ...], wanted: dict[str, str]) -> Plan:
    """Whether pg_settings shows the drop-in's values (rows: name, setting, unit, vartype,
    pending_restart, sourcefile); a restart or reload when the server has not taken them yet, a
    refusal when another file (ALTER SYSTEM's postgresql.auto.conf, a later drop-in) wins."""
    current = {row[0]: row for row in rows if len(row) == 6}
    pending = sorted(name for name, row in current.items() if row[4] == "true")
    differ = [name for name, value in wanted.items() if name in current
              and not same_value(value, current[name][1], current[name][2], current[name][3])]
    foreign = [f"{name} (from {current[name][5] or 'its default'})" for name in differ
               if name not in pending and not current[name][5].endswith(f"/{DROPIN_NAME}")]
    if foreign:
        raise Refused(f"{', '.join(foreign)} override the drop-in {DROPIN_NAME}: remove them "
                      "there (ALTER SYSTEM RESET name, for postgresql.auto.conf) so the "
                      "inventory's values apply")
    if pending:
        return Plan(f"{', '.join(pending)} wait for a restart", action=":", notify=(RESTART,))
    if differ:
        return Plan(f"{', '.join(differ)} not in effect yet: reload", action=":",
                    notify=(RELOAD,))
    return Plan(f"all {len(wanted)} settings in effect, none waiting for a restart")


def ensure_settings_in_effect(host: Host, settings_for: Callable[[int], dict[str, str]],
                              names: list[str], applying: Applying) -> Step:
    """pg_settings equal to the drop-in and no pending_restart, in the same probe round trip
    (one item of the SQL group): after a change, the handler proves it instead."""
    query = ("SELECT name, setting, coalesce(unit, ''), vartype, pending_restart::text, "
             "coalesce(sourcefile, '') FROM pg_settings WHERE name IN ("
             + ", ".join(quote_literal(name) for name in names) + ") ORDER BY name")

    def decide(probed: Probed) -> Plan:
        if applying.changed:
            return Plan("the handler after the role's steps applies and checks them")
        answer = parse(probed.output)
        rows = answer.require("pg_settings")
        return plan_in_effect(rows, settings_for(int(answer.version.split(".")[0])))

    return Step("PostgreSQL settings in effect (pg_settings)", sql_probe(query), decide,
                notify=(RESTART, RELOAD), grouped=grouped_sql_probe(query))


#: Problems the server reports after a reload or restart, one line each (none: all applied).
PROBLEMS_SQL = (
    "SELECT sourcefile || ':' || sourceline || ': ' || name || ' = ' || coalesce(setting, '') "
    "|| ': ' || error FROM pg_file_settings WHERE error IS NOT NULL "
    "UNION ALL SELECT sourcefile || ':' || sourceline || ': ' || name || ' is overridden by a "
    f"later file' FROM pg_file_settings WHERE sourcefile LIKE '%/conf.d/{DROPIN_NAME}' AND "
    "NOT applied AND error IS NULL "
    "UNION ALL SELECT name || ' waits for a restart' FROM pg_settings WHERE pending_restart "
    "UNION ALL SELECT 'pg_hba.conf line ' || line_number || ': ' || error FROM "
    "pg_hba_file_rules WHERE error IS NOT NULL")


def _verify() -> str:
    """Shell that fails with the server's own words when the configuration did not apply."""
    return (f"problems=$( {psql_command(PROBLEMS_SQL)} ) || exit 1\n"
            "if [ -n \"$problems\" ]; then printf 'PostgreSQL did not apply its configuration:"
            "\\n%s\\n' \"$problems\"; grep -E 'invalid value|configuration file|parameter' "
            f"\"/var/log/postgresql/postgresql-$pgver-{CLUSTER}.log\" 2>/dev/null | tail -n 5; "
            "exit 1; fi")


def _wait(condition: str, what: str) -> str:
    return (f"i=0; until {condition}; do i=$((i + 1)); if [ \"$i\" -gt 120 ]; then "
            f"echo 'PostgreSQL {what} within 60 s' >&2; exit 1; fi; sleep 0.5; done")


def _handler_action(reload: bool) -> str:
    load_time = psql_command("SELECT pg_conf_load_time()")
    unit = f"\"postgresql@$pgver-{CLUSTER}.service\""
    if reload:
        change = (f"before=$( {load_time} ) || exit 1\nsystemctl reload {unit} || exit 1\n"
                  + _wait(f"[ \"$( {load_time} 2>/dev/null )\" != \"$before\" ]",
                          "did not reload"))
    else:
        change = (f"systemctl restart {unit} || exit 1\n"
                  + _wait(f"{psql_command('SELECT 1')} >/dev/null 2>&1",
                          "did not answer after its restart"))
    return f"{CLUSTER_SHELL}\n{change}\n{CLUSTER_SHELL}\n{_verify()}"


HANDLERS = (
    Handler(RELOAD, _handler_action(reload=True)),
    Handler(RESTART, _handler_action(reload=False), supersedes=(RELOAD,)),
)
