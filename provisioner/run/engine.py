"""The run: validate everything up front, then apply roles to many hosts in parallel.

The engine knows no role by name. It loads the roles a host asks for, merges and checks their
variables before contacting anyone (so a bad inventory changes nothing anywhere), then gives each
host its own thread, connection and HostWalk, and collects one result per host.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from provisioner.change import Change
from provisioner.content.roles import Role, available_roles, load_role
from provisioner.content.variables import check_login_kept, merge_role_variables
from provisioner.errors import ProvisionerError, RoleError
from provisioner.facts import FACTS_SCRIPT, Facts, facts_complete, parse_facts
from provisioner.facts import remembered as remembered_facts
from provisioner.host import Host
from provisioner.inventory.hosts import HostConfig
from provisioner.run.host_lock import host_lock
from provisioner.run.results import HostResult, Listener, RunResult
from provisioner.run.walk import HostWalk, RoleSteps
from provisioner.transport.kept_logins import open_connection, prepare_keepers
from provisioner.transport.remote import RemoteShell


@dataclass(frozen=True)
class RunOptions:
    check: bool = False
    diff: bool = False
    parallel: int = 10
    roles: tuple[str, ...] = ()
    role_dirs: tuple[Path, ...] | None = None


@dataclass(frozen=True)
class HostJob:
    """Everything needed to work on one host, validated before any connection is opened."""

    config: HostConfig
    roles: tuple[Role, ...]
    variables: dict[str, object]


def prepare(hosts: Sequence[HostConfig], options: RunOptions) -> list[HostJob]:
    """Load roles and check every host's variables; raises RoleError before any host is touched."""
    known = available_roles(options.role_dirs)
    jobs = []
    for config in hosts:
        names = [name for name in config.roles if not options.roles or name in options.roles]
        for name in options.roles:
            if name not in known:
                raise RoleError(f"--roles names {name!r}, which is not a role (available: "
                                f"{', '.join(sorted(known))}).")
        roles = tuple(load_role(known[name]) for name in names)
        variables = merge_role_variables(roles, config.vars, f"host {config.name}")
        check_login_kept(roles, config, variables)
        jobs.append(HostJob(config, roles, variables))
    return jobs


def run(jobs: Sequence[HostJob], options: RunOptions, listener: Listener) -> RunResult:
    """Apply each job's roles to its host, hosts in parallel (at most options.parallel at once)."""
    workers = max(1, min(options.parallel, len(jobs)))
    prepare_keepers([job.config for job in jobs], workers)
    if workers == 1:
        results = [_run_host(job, options, listener) for job in jobs]
    else:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            results = list(pool.map(lambda job: _run_host(job, options, listener), jobs))
    return RunResult({result.name: result for result in results}, check=options.check)


def _run_host(job: HostJob, options: RunOptions, listener: Listener) -> HostResult:
    result = HostResult(job.config.name)
    started = time.monotonic()
    listener.host_started(job.config.name)
    try:
        with host_lock(job.config) if not options.check else nullcontext():
            _walk_host(job, options, listener, result)
    except ProvisionerError as error:
        result.error = str(error)
    result.duration = time.monotonic() - started
    listener.host_finished(result)
    return result


def _walk_host(job: HostJob, options: RunOptions, listener: Listener,
               result: HostResult) -> None:
    """Connect, walk the host's roles, and count the round trips into ``result``."""
    name = job.config.name
    connection: RemoteShell | None = None
    walk: HostWalk | None = None
    try:
        connection = open_connection(job.config)
        opened = connection

        def record(change: Change) -> None:
            result.changes.append(change)
            listener.step_finished(name, change)

        walk = _probed_walk(job, options, opened, lambda host, plan: HostWalk(
            host, opened, plan, record, partial(listener.action_started, name),
            partial(listener.action_progress, name)))
        walk.run()
    finally:
        if connection is not None:
            confirmations = walk.confirmation_round_trips if walk is not None else 0
            result.round_trips = connection.round_trips + confirmations
            result.connection = "reused" if connection.reused else "new"
            connection.close()


def _probed_walk(job: HostJob, options: RunOptions, connection: RemoteShell,
                 make_walk: Callable[[Host, list[RoleSteps]], HostWalk]) -> HostWalk:
    """The host's walk, its first round trip already made when remembered facts were used.

    Steps rendered from the facts the host gave last time are probed together with the facts
    script; if the host's answer differs (or rendering from the old facts failed), they are
    rendered again from the real facts and probed in the walk's own first round trip, so
    nothing is ever decided from facts the host did not give in this run."""
    def new_host(gather: Callable[[], Facts]) -> Host:
        return Host(job.config, job.variables, gather, check=options.check,
                    show_diff=options.diff)

    gather = partial(_gather_and_remember, connection, job.config)
    remembered = remembered_facts.recall(job.config)
    actual = None
    if remembered is not None:
        host = new_host(gather)
        host.assume_facts(remembered)
        walk, actual = _walk_on_assumed_facts(host, job.roles, make_walk)
        if walk is not None:
            return walk
    host = new_host(gather)
    if actual is not None:
        host.settle_facts(actual)  # the real facts, from the round trip just made
    return make_walk(host, _role_steps(host, job.roles))


def _walk_on_assumed_facts(host: Host, roles: Sequence[Role],
                           make_walk: Callable[[Host, list[RoleSteps]], HostWalk]
                           ) -> tuple[HostWalk | None, Facts | None]:
    """(the walk, when its steps stand, else None; the host's real facts when it gave them)."""
    try:
        walk = make_walk(host, _role_steps(host, roles))
    except Exception:  # the old facts may break a role; the real ones decide
        if host.assumed_facts_read:
            return None, None
        raise
    if not host.assumed_facts_read:
        host.settle_facts(None)
        return walk, None
    answer = walk.probe_all(FACTS_SCRIPT)
    output = answer.output if answer is not None and answer.exit_code == 0 else ""
    actual = parse_facts(output) if facts_complete(output) else None
    remembered_facts.remember(host.config, output)
    return (walk if host.settle_facts(actual) else None), actual


def _gather_and_remember(connection: RemoteShell, config: HostConfig) -> Facts:
    """Facts of a connected host in one round trip, remembered for its next run."""
    output = connection.run_script(FACTS_SCRIPT).stdout
    remembered_facts.remember(config, output)
    return parse_facts(output)


def read_facts(connection: RemoteShell) -> Facts:
    """Facts of a connected host in one round trip."""
    return parse_facts(connection.run_script(FACTS_SCRIPT).stdout)


def _role_steps(host: Host, roles: Sequence[Role]) -> list[RoleSteps]:
    plan = []
    for role in roles:
        host.template_dir = role.template_dir
        plan.append(RoleSteps(role, list(role.steps(host))))
    host.template_dir = None
    return plan


def gather_facts(config: HostConfig) -> Facts:
    """Facts of one host (for ``invoke facts``): one connection, one round trip."""
    connection = open_connection(config)
    try:
        return _gather_and_remember(connection, config)
    finally:
        connection.close()



