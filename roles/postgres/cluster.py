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
    sql_probe,
)
from provisioner.ops.systemd import parse_unit, plan_service
from provisioner.sql import quote_literal
from provisioner.step import Handler, Plan, Probed, ProbeUnreadable, Refused, Step
from roles.postgres.handlers import (
    APPLY_RUNNING,
    APPLY_UNIT,
    PREVIOUS,
    RELOAD,
    RESTART,
    clear_previous_command,
    recover_action,
    reload_action,
    restart_action,
    save_previous_command,
    start_action,
)
from roles.postgres.listening import ADDRESSES_PROBE, foreign_addresses, host_addresses
from roles.postgres.settings import (
    DROPIN_NAME,
    changed_names,
    parse_dropin,
    render_dropin,
    same_value,
)

_PLACEHOLDER = "@PGVER@"
_VERSION = "pg-version "
_CONFIG = "pg-config\n"
_AUTO = "pg-auto "
#: Prints ``pg-auto NAME`` for each setting ALTER SYSTEM put in postgresql.auto.conf: it is
#: read after conf.d, so each of them wins over the drop-in (a file read: no server needed).
_AUTO_CONF = ("awk '/^[ \\t]*[A-Za-z_][A-Za-z0-9_.]*[ \\t]*=/ { sub(/^[ \\t]*/, \"\"); "
              "sub(/[ \\t]*=.*/, \"\"); print \"pg-auto \" tolower($0) }' "
              "\"$pgdata/postgresql.auto.conf\" 2>/dev/null")


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
            f"{_AUTO_CONF}\n{ADDRESSES_PROBE}\nprintf '{_CONFIG.strip()}\\n'\n{files}")


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
    refuse_auto_conf_overrides(head, settings)
    refuse_foreign_addresses(head, settings)
    config = _config_set(version, settings, hba)
    state = parse_config_set(files, config)
    plan = plan_config_set(config, state, show_diff)
    if not plan.changes or plan.action is None:
        return plan
    saved = save_previous_command([dropin_path(version), f"{config_root(version)}/pg_hba.conf"])
    plan = replace(plan, action=f"{saved}\n{plan.action}")
    before = parse_dropin(state.contents.get(dropin_path(version), b"").decode(errors="replace"))
    restart = [name for name in changed_names(before, settings) if name in restart_names]
    if restart:
        return replace(plan, reason=f"{plan.reason}; restart for {', '.join(restart)}",
                       notify=(RESTART,))
    return replace(plan, reason=f"{plan.reason}; reload", notify=(RELOAD,))


def refuse_auto_conf_overrides(head: str, settings: dict[str, str]) -> None:
    """Refused, before anything is written or restarted, when ALTER SYSTEM set any setting the
    drop-in manages: postgresql.auto.conf wins over conf.d, so the inventory's value would not
    apply (and a restart of ours would make someone else's restart-only change live)."""
    auto = {line[len(_AUTO):].strip() for line in head.splitlines() if line.startswith(_AUTO)}
    overridden = sorted(auto & set(settings))
    if overridden:
        resets = "; ".join(f"ALTER SYSTEM RESET {name}" for name in overridden)
        raise Refused(f"postgresql.auto.conf (ALTER SYSTEM) sets {', '.join(overridden)}, which "
                      f"the inventory manages in conf.d/{DROPIN_NAME}; it would win over the "
                      f"inventory's value, so nothing was changed or restarted: clear them as "
                      f"the postgres superuser ({resets};), and the next run applies the "
                      "drop-in's values")


def refuse_foreign_addresses(head: str, settings: dict[str, str]) -> None:
    """Refused before anything changes: a listen address that is none of the host's (PostgreSQL
    would start on the others, localhost say, and warn only in its log)."""
    wanted = settings.get("listen_addresses", "").split(",")
    addresses = host_addresses(head)
    missing = foreign_addresses(wanted, addresses)
    if missing:
        raise Refused(f"listen_addresses holds {', '.join(missing)}, which is not an address of "
                      f"this host (it has {', '.join(sorted(addresses))}); nothing was changed: "
                      "set postgres_listen_address to one of them, or leave it empty for the "
                      "inventory's address")


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


def plan_recovery(output: str) -> Plan:
    """Whether a change was cut off with the server down (probe lines: pg-saved when PREVIOUS
    holds a save, pg-state and pg-apply the ActiveState of the cluster's unit and of
    APPLY_UNIT): then its saved configuration comes back first, before anything is decided."""
    version = read_version(output)
    fields = dict(line.split(" ", 1) for line in output.splitlines()[1:] if " " in line)
    state, applying = fields.get("pg-state", ""), fields.get("pg-apply", "")
    if "pg-saved" not in output.splitlines():
        return Plan("no configuration left saved by an interrupted change")
    if applying in ("active", "activating", "deactivating"):
        return Plan(f"an earlier change still runs in {APPLY_UNIT}: wait for it, then put back "
                    "what it saved if the server is down", action=recover_action())
    if state == "active":
        return Plan(f"PostgreSQL {version} runs; the save of an unfinished change in "
                    f"{PREVIOUS} stays until a handler proves the configuration")
    return Plan(f"PostgreSQL {version} is {state or 'down'} with the configuration of a change "
                f"whose run was cut off before it was proven: put back the conf.d/{DROPIN_NAME} "
                f"and pg_hba.conf saved before it ({PREVIOUS}) and start the server with them",
                action=recover_action())


def ensure_interrupted_change_undone() -> Step:
    """First of all: a change whose run died mid-restart (before its rollback) leaves the server
    down and the previous files in PREVIOUS; put them back, start, and say so."""
    def decide(probed: Probed) -> Plan:
        return plan_recovery(probed.output)

    probe = (f"{CLUSTER_SHELL}\nif [ -z \"$pgver\" ]; then exit 0; fi\n"
             f"echo \"{_VERSION}$pgver\"\n[ ! -f {PREVIOUS}/paths ] || echo pg-saved\n"
             f"echo \"pg-state $(systemctl show -p ActiveState --value "
             f"\"postgresql@$pgver-{CLUSTER}.service\")\"\n"
             f"if {APPLY_RUNNING}; then echo 'pg-apply active'; fi")
    return Step("PostgreSQL configuration of an interrupted change", probe, decide)


def ensure_cluster_running(host: Host) -> Step:
    """postgresql@<ver>-main active; Debian's generator enables it at boot from start.conf
    (enabled-runtime), and the postgresql umbrella unit is enabled by its own step. Anything
    but active (activating included) gets the handlers' bounded start."""
    def decide(probed: Probed) -> Plan:
        version = read_version(probed.output)
        unit = f"postgresql@{version}-{CLUSTER}.service"
        state = parse_unit(probed.output.split("\n", 1)[1])
        if state.get("LoadState") in (None, "not-found") or state.get("ActiveState") == "active":
            return plan_service(unit, state, None, True)
        # "activating" is not running: a start that cannot finish stays there for ever
        return Plan(f"{state.get('ActiveState')} -> running (bounded start)",
                    action=start_action())

    probe = (f"{CLUSTER_SHELL}\nif [ -z \"$pgver\" ]; then exit 0; fi\n"
             f"echo \"{_VERSION}$pgver\"\nsystemctl show -p LoadState -p UnitFileState -p "
             f"ActiveState -- \"postgresql@$pgver-{CLUSTER}.service\"")
    return Step("PostgreSQL cluster running", probe, decide)


#: Rows ``@file, name, file:line`` for each managed setting whose last line in the files on disk
#: (pg_file_settings reads them now, not at the last reload) is not in the drop-in: a later
#: conf.d file (99-hand.conf) or postgresql.auto.conf wins, restart-only settings included
#: (pg_file_settings marks those "setting could not be applied" until a restart: not skipped).
_OVERRIDDEN_SQL = (
    "SELECT '@file', name, sourcefile || ':' || sourceline, '', '', '' FROM (SELECT DISTINCT "
    "ON (name) name, sourcefile, sourceline FROM pg_file_settings WHERE name IN ({names}) "
    "ORDER BY name, seqno DESC) AS last WHERE sourcefile NOT LIKE "
    f"'%/conf.d/{DROPIN_NAME}'")


def refuse_file_overrides(rows: tuple[tuple[str, ...], ...]) -> None:
    """Refused, naming each: a managed setting another file on disk sets after the drop-in
    (its value, not the inventory's, is what the next reload or restart applies)."""
    found = [f"{row[1]} ({row[2]})" for row in rows if row[0] == "@file" and len(row) == 6]
    if found:
        raise Refused(f"{', '.join(found)} override the drop-in {DROPIN_NAME} from a later file: "
                      "remove them there (ALTER SYSTEM RESET name, for postgresql.auto.conf) "
                      "so the inventory's values apply; nothing was reloaded or restarted")


def plan_in_effect(rows: tuple[tuple[str, ...], ...], wanted: dict[str, str]) -> Plan:
    """Whether pg_settings shows the drop-in's values (rows: name, setting, unit, vartype,
    pending_restart, sourcefile); a restart or reload when the server has not taken them yet, a
    refusal when another file (ALTER SYSTEM's postgresql.auto.conf, a later drop-in) wins."""
    refuse_file_overrides(rows)
    current = {row[0]: row for row in rows if len(row) == 6 and row[0] != "@file"}
    waiting = sorted(name for name, row in current.items() if row[4] == "true")
    pending = [name for name in waiting if name in wanted]
    # someone else's change (ALTER SYSTEM of a setting we do not manage): theirs to restart for
    others = [name for name in waiting if name not in wanted]
    note = f"; {', '.join(others)} wait for a restart that is not ours (not restarted)" \
        if others else ""
    differ = [name for name, value in wanted.items() if name in current
              and not same_value(value, current[name][1], current[name][2], current[name][3])]
    foreign = [f"{name} (from {current[name][5] or 'its default'})" for name in differ
               if name not in pending and not current[name][5].endswith(f"/{DROPIN_NAME}")]
    if foreign:
        raise Refused(f"{', '.join(foreign)} override the drop-in {DROPIN_NAME}: remove them "
                      "there (ALTER SYSTEM RESET name, for postgresql.auto.conf) so the "
                      "inventory's values apply")
    if pending:
        return Plan(f"{', '.join(pending)} wait for a restart{note}",
                    action=clear_previous_command(), notify=(RESTART,))
    if differ:
        return Plan(f"{', '.join(differ)} not in effect yet: reload{note}",
                    action=clear_previous_command(), notify=(RELOAD,))
    return Plan(f"all {len(wanted)} settings in effect, none of ours waiting for a restart"
                f"{note}")


def ensure_settings_in_effect(host: Host, settings_for: Callable[[int], dict[str, str]],
                              names: list[str], applying: Applying) -> Step:
    """pg_settings equal to the drop-in and no pending_restart, in the same probe round trip
    (one item of the SQL group): after a change, the handler proves it instead."""
    listed = ", ".join(quote_literal(name) for name in names)
    query = ("SELECT name, setting, coalesce(unit, ''), vartype, pending_restart::text, "
             "coalesce(sourcefile, '') FROM pg_settings WHERE pending_restart OR name IN ("
             f"{listed}) UNION ALL {_OVERRIDDEN_SQL.format(names=listed)} ORDER BY 1, 2")

    def decide(probed: Probed) -> Plan:
        if applying.changed:
            return Plan("the handler after the role's steps applies and checks them")
        answer = parse(probed.output)
        rows = answer.require("pg_settings")
        return plan_in_effect(rows, settings_for(int(answer.version.split(".")[0])))

    return Step("PostgreSQL settings in effect (pg_settings)", sql_probe(query), decide,
                notify=(RESTART, RELOAD), grouped=grouped_sql_probe(query))


HANDLERS = (
    Handler(RELOAD, reload_action()),
    Handler(RESTART, restart_action(), supersedes=(RELOAD,)),
)
