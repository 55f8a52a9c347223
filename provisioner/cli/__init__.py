"""What the invoke tasks do, kept out of tasks.py so tasks stay four lines of intent each.

Everything a command line can get wrong is judged here before any host is contacted (flags,
paths, --set names, the types of variables, where they were set), so a mistake costs exit 2 and
one message, never a half-applied run.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml

from provisioner.content.roles import PROJECT_ROOT, Role, available_roles, load_role
from provisioner.content.templates import template_variables
from provisioner.content.variables import kind_name, same_kind, unquoted_time_hint
from provisioner.errors import InventoryError, ProvisionerError
from provisioner.facts import Facts
from provisioner.inventory.hosts import HostConfig, Inventory
from provisioner.inventory.loader import forget_validation, load_inventory
from provisioner.inventory.view import InventoryView
from provisioner.local_files import can_create_in
from provisioner.login_keys import key_file_problem
from provisioner.output.console import ConsoleReport
from provisioner.output.run_report import write_report
from provisioner.run.engine import RunOptions, gather_facts, prepare, run
from provisioner.run.results import RunResult
from provisioner.run.session import HostJob
from provisioner.secrets.values import Secret

DEFAULT_INVENTORY = PROJECT_ROOT / "inventories" / "sandbox.yml"


def inventory_path(given: str) -> Path:
    """--inventory, else $PROVISIONER_INVENTORY, else the sandbox inventory."""
    chosen = given or os.environ.get("PROVISIONER_INVENTORY", "")
    return Path(chosen).resolve() if chosen else DEFAULT_INVENTORY


def parse_cli_vars(assignments: Iterable[str]) -> dict[str, Any]:
    """``--set key=value`` pairs; values are read as YAML scalars (true, 3, [a, b])."""
    values: dict[str, Any] = {}
    for assignment in assignments:
        key, sep, raw = assignment.partition("=")
        if not sep or not key.strip():
            raise ProvisionerError(f"--set {assignment!r} must look like name=value.")
        try:
            values[key.strip()] = yaml.safe_load(raw) if raw else ""
        except yaml.YAMLError:
            values[key.strip()] = raw
    return values


def load(inventory: str, cli_vars: Iterable[str] = (), *,
         resolve_secrets: bool = True) -> Inventory:
    return load_inventory(inventory_path(inventory), available_roles(),
                          parse_cli_vars(cli_vars), resolve_secrets=resolve_secrets)


def split_names(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


# --- flags judged before the inventory is read --------------------------------------------------


def check_run_flags(parallel: int, report: str, serial: int = 0, html: str = "") -> None:
    """Refuse flags that cannot work before anything else happens: a report path that cannot be
    written would otherwise fail with a traceback after every host had been changed."""
    if parallel < 1:
        raise ProvisionerError(f"--parallel {parallel}: must be at least 1 (how many hosts to "
                               "work on at once; the default is 10).")
    if serial < 0:
        raise ProvisionerError(f"--serial {serial}: must be 0 (every host at once) or how many "
                               "hosts each batch holds.")
    if report:
        check_report_path(Path(report))
    if html:
        check_report_path(Path(html), "--html")
    if report and html and Path(report).resolve() == Path(html).resolve():
        raise ProvisionerError(f"--report and --html both name {report}: give each a file of "
                               "its own.")


def check_report_path(path: Path, flag: str = "--report") -> None:
    """A report's file must be creatable now, so the run's outcome is not lost at the end."""
    shown = f"{flag} {path}"
    example = "host-report.html" if flag == "--html" else "report.json"
    if path.is_dir():
        raise ProvisionerError(f"{shown}: this is a directory; give a file name, for example "
                               f"{flag} {path / example}.")
    directory = path.parent
    if not directory.is_dir():
        raise ProvisionerError(f"{shown}: the directory {directory} does not exist; create it "
                               f"(mkdir -p {directory}) or write the report somewhere else.")
    if path.is_symlink() or (path.exists() and not path.is_file()):
        what = "a symbolic link" if path.is_symlink() else "not a regular file"
        raise ProvisionerError(f"{shown}: this is {what}; the report is written as a new "
                               "regular file only, so give a path that is one or is free.")
    if not can_create_in(directory) or (path.exists() and not os.access(path, os.W_OK)):
        raise ProvisionerError(f"{shown}: you may not write there; choose a file in a "
                               "directory of yours.")


# --- choosing and checking the hosts' jobs -------------------------------------------------------


def selection(host: str | None, group: str | None) -> tuple[str, str]:
    """The --host and --group flags, "" when not given; given but naming nothing (an unset
    shell variable: --host "$HOST") is a mistake, never a selection of every host."""
    for flag, value in (("--host", host), ("--group", group)):
        if value is not None and not split_names(value):
            raise ProvisionerError(f"{flag} was given but names nothing (an empty or unset shell "
                                   f"variable?). Name what to select, or leave {flag} out to "
                                   "select every host.")
    return host or "", group or ""


def select_jobs(inventory: Inventory, hosts: str, group: str,
                options: RunOptions) -> list[HostJob]:
    """The selected hosts' jobs, every variable checked where the user wrote it first; an
    inventory refused here is not kept in the validation cache (it may hold a secret as text)."""
    try:
        chosen = selected_hosts(inventory, hosts, group)
        check_identity_files(inventory, chosen)
        roles = _roles_of(chosen, options)
        check_cli_variable_names(inventory, chosen, roles)
        check_variable_types(inventory, chosen, roles, options.roles)
        return prepare(chosen, options, InventoryView.of(inventory))
    except ProvisionerError:
        forget_validation(inventory.path)
        raise


def check_identity_files(inventory: Inventory, chosen: Sequence[HostConfig]) -> None:
    """Each chosen host's ssh.identity_file is a private key file, before anything is contacted
    (a missing one was reported as an unreachable host, after trying)."""
    for config in chosen:
        path = config.ssh.identity_file
        problem = None if path is None else key_file_problem(path)
        if problem is not None:
            raise ProvisionerError(f"{inventory.path}: ssh.identity_file of host {config.name} "
                                   f"({path}) {problem}. Fix it under defaults.ssh or "
                                   f"hosts.{config.name}.ssh.")


def selected_hosts(inventory: Inventory, hosts: str, group: str) -> list[HostConfig]:
    chosen = inventory.select(hosts, group)
    if chosen:
        return chosen
    if group:
        raise ProvisionerError(f"--group {group}: no host of {inventory.path} is in this group; "
                               "add the group to a host's 'groups:'.")
    raise ProvisionerError(f"{inventory.path} lists no hosts; add them under 'hosts:'.")


def _roles_of(chosen: Sequence[HostConfig], options: RunOptions) -> dict[str, Role]:
    """Every role the chosen hosts list, loaded (loading is cached, prepare() reuses it)."""
    known = available_roles(options.role_dirs)
    names = dict.fromkeys(name for config in chosen for name in config.roles if name in known)
    return {name: load_role(known[name]) for name in names}


def check_cli_variable_names(inventory: Inventory, chosen: Sequence[HostConfig],
                             roles: Mapping[str, Role]) -> None:
    """A --set name that nothing declares is a typo that would otherwise change nothing, silently
    (roles only catch their own ``<role>_`` prefix)."""
    declared = set(inventory.file_variables)
    for role in roles.values():
        declared.update(role.defaults)
        if role.template_dir.is_dir():
            for names in template_variables(role.template_dir).values():
                declared.update(names)
    for name in inventory.cli_variables:
        if name not in declared:
            raise ProvisionerError(_undeclared(name, declared, roles, inventory.path))


def _undeclared(name: str, declared: Iterable[str], roles: Mapping[str, Role],
                path: Path) -> str:
    import difflib

    close = difflib.get_close_matches(name, sorted(declared), n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return (f"--set {name}: no role of the selected hosts ({', '.join(roles) or 'none'}) has a "
            f"variable {name!r}, and {path} does not set it.{hint} Each role's variables are "
            "listed in roles/<role>/defaults.yml.")


def check_variable_types(inventory: Inventory, chosen: Sequence[HostConfig],
                         roles: Mapping[str, Role], only: Sequence[str] = ()) -> None:
    """A value of the wrong type is named where it was set (defaults.vars, groups.G.vars,
    hosts.H.vars or --set), not only on the host that inherited it: the same check the roles
    make, made first so the message can point at the line to fix."""
    for config in chosen:
        origins = inventory.variable_origins.get(config.name, {})
        for role in (roles[name] for name in config.roles
                     if name in roles and (not only or name in only)):
            for key, default in role.defaults.items():
                if default is None or key not in config.vars:
                    continue
                value = config.vars[key]
                if value is None or not same_kind(default, value):
                    origin = origins.get(key, f"hosts.{config.name}.vars")
                    raise _wrong_type(inventory.path, origin, key, value, default, role)


def _wrong_type(path: Path, origin: str, key: str, value: Any, default: Any,
                role: Role) -> ProvisionerError:
    got = ("nothing (an empty YAML value?)" if value is None
           else f"{kind_name(value)} {_short(value)}")
    problem = (f"should be {kind_name(default)} like its default in {role.path / 'defaults.yml'} "
               f"({_short(default)}), got {got}.{unquoted_time_hint(key, default, value)}")
    if origin == "--set":
        return ProvisionerError(f"--set {key}: {problem}")
    return InventoryError(str(path), f"{origin}.{key}", problem)


def _short(value: Any, limit: int = 60) -> str:
    """A value as an error may show it: never the contents of something that looks like a
    secret reference gone wrong ({secret: hunter2, note: x} holds the secret itself)."""
    if _looks_like_a_secret(value):
        return "(not shown: it looks like a secret reference; write {secret: env:NAME} or " \
               "{secret: file:PATH})"
    if isinstance(value, Secret):
        return "(a secret)"
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _looks_like_a_secret(value: Any) -> bool:
    if isinstance(value, dict):
        return any("secret" in str(key).lower() or _looks_like_a_secret(item)
                   for key, item in value.items())
    if isinstance(value, list):
        return any(_looks_like_a_secret(item) for item in value)
    return False


# --- the commands ---------------------------------------------------------------------------------


def run_hosts(inventory: Inventory, hosts: str, group: str, options: RunOptions,
              profile: bool = False) -> RunResult:
    """Run the selected hosts with the console listening; the summary (and profile) after."""
    return run_and_record(inventory, hosts, group, options, profile)[1]


def run_and_record(inventory: Inventory, hosts: str, group: str, options: RunOptions,
                   profile: bool = False, show_diff: bool | None = None
                   ) -> tuple[list[HostJob], RunResult]:
    """run_hosts, keeping each host's record for ``invoke report``; the diffs are computed
    when ``options.diff`` says so and printed when ``show_diff`` does (default: the same)."""
    jobs = select_jobs(inventory, hosts, group, options)
    console = ConsoleReport(show_diff=options.diff if show_diff is None else show_diff,
                            check=options.check)
    result = run(jobs, options, console)
    console.summary(result)
    if profile:
        console.profile(result)
    keep_records(inventory, jobs, result, options.diff)
    return jobs, result


def keep_records(inventory: Inventory, jobs: Sequence[HostJob], result: RunResult,
                 diffs: bool) -> None:
    """Each host's provision record; one that cannot be kept is said, the run stands."""
    from provisioner.report.provision_record import save_provision_records

    try:
        save_provision_records(inventory.path, jobs, result, diffs)
    except OSError as error:
        print(f"warning: the run's records for invoke report could not be kept: "
              f"{error.strerror or error}.", file=sys.stderr)


def provision(inventory: Inventory, hosts: str, group: str, options: RunOptions,
              report: str = "", profile: bool = False, html: str = "") -> int:
    """``invoke provision``: the run, its JSON report, its host report, and the exit code.

    ``html`` asks for the page: the run then computes diffs (printed only with --diff) and
    each host's live status is read after it, in one more round trip."""
    previous = {number: signal.signal(number, _interrupted)
                for number in (signal.SIGTERM, signal.SIGHUP)}
    run_options = replace(options, diff=True) if html else options
    try:
        jobs, result = run_and_record(inventory, hosts, group, run_options, profile,
                                      show_diff=options.diff)
    except KeyboardInterrupt:
        print(INTERRUPTED, file=sys.stderr)
        return 130
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
    code = result.exit_code
    if report and not save_report(result, Path(report)):
        code = max(code, 1)
    if html and not save_host_report(inventory, jobs, result, html):
        code = max(code, 1)
    return code


def verify(inventory: Inventory, hosts: str, group: str, options: RunOptions,
           pytest_args: Sequence[str] = ()) -> int:
    """``invoke verify``: each host's specs; each host's result kept for ``invoke report``."""
    from provisioner.records import save_record
    from provisioner.report.verify_record import run_verify

    code = 0
    for job in select_jobs(inventory, hosts, group, options):
        host_code, record = run_verify(job, pytest_args)
        code = 1 if host_code else code
        try:
            save_record(inventory.path, job.config.name, "verify", record)
        except OSError as error:
            print(f"warning: the verify record of {job.config.name} for invoke report could "
                  f"not be kept: {error.strerror or error}.", file=sys.stderr)
    return code


def save_host_report(inventory: Inventory, jobs: Sequence[HostJob], result: RunResult,
                     html: str) -> bool:
    """The page of the run's hosts; a host the run could not reach is not asked again."""
    from provisioner.cli.report import host_report_data, write_outputs

    unreached = {name: f"host unreachable in this run: {host.error}"
                 for name, host in result.hosts.items()
                 if host.error and not host.round_trips}
    return write_outputs(host_report_data(inventory.path, jobs, unreached), html, "")


def _interrupted(number: int, frame: object) -> None:
    """SIGTERM and SIGHUP stop a run as Ctrl-C does, saying what it leaves."""
    raise KeyboardInterrupt


#: What an interrupted run leaves, said as it stops.
INTERRUPTED = ("interrupted: a host may hold a change that was not proven yet (one made under a "
               "safeguard: sshd, the firewall, the admin's login); if so, the host's own revert "
               "timer restores it within the safeguard's timeout (120 s by default), and the "
               "next run reverts it at once and makes it again. Handlers a change notified are "
               "recorded on the host, so the next run runs them. Run again when you are ready.")


def save_report(result: RunResult, path: Path) -> bool:
    """Write the report; False (said on stderr) when it could not be written. The path was
    checked before the run, so this is a disk that filled or a directory removed meanwhile."""
    try:
        write_report(result, path)
    except OSError as error:
        print(f"error: the run finished (see the summary above), but its report could not be "
              f"written to {path}: {error.strerror or error}.", file=sys.stderr)
        return False
    return True


def facts_report(inventory: Inventory, hosts: str, group: str,
                 as_json: bool = False) -> tuple[str, list[str]]:
    """What ``invoke facts`` prints (an aligned table per host, or JSON for machines), and the
    errors of the hosts that could not be asked: one host that is down does not hide the rest."""
    import json

    # Only `invoke facts` shows facts; a provision run does not import their table.
    from provisioner.output.facts_table import facts_data, facts_table

    gathered: dict[str, Facts] = {}
    failures: list[str] = []
    for config in selected_hosts(inventory, hosts, group):
        try:
            gathered[config.name] = gather_facts(config)
        except ProvisionerError as error:
            failures.append(str(error))
    if as_json:
        text = json.dumps({name: facts_data(facts) for name, facts in gathered.items()},
                          indent=2)
    else:
        text = "\n".join(facts_table(name, facts) for name, facts in gathered.items())
    return text, failures


def disconnect(inventory: Inventory | None, hosts: str, group: str) -> str:
    """Close kept logins: the selected hosts' when an inventory is given, else all of them."""
    from provisioner.transport.kept_logins import close_keepers

    addresses = None
    if inventory is not None:
        addresses = {config.address for config in selected_hosts(inventory, hosts, group)}
    closed = close_keepers(addresses)
    return f"closed the kept logins to {', '.join(closed)}" if closed else "no kept logins open"


# --- the sandbox's messages ---------------------------------------------------------------------
