"""The run: validate everything up front, then apply roles to many hosts.

The engine knows no role by name. It loads the roles a host asks for, merges and checks their
variables before contacting anyone (so a bad inventory changes nothing anywhere), then walks each
host's roles in its own session (session.py), the hosts moved through by a strategy
(strategies.py), and collects one result per host.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from provisioner.change import Change
from provisioner.content.roles import available_roles, load_role
from provisioner.content.variables import (
    check_inventory_references,
    check_login_kept,
    merge_role_variables,
)
from provisioner.errors import ProvisionerError, RoleError
from provisioner.facts import Facts
from provisioner.host import secrets_in
from provisioner.inventory.hosts import HostConfig
from provisioner.inventory.view import InventoryView
from provisioner.run.results import HostResult, Listener, RunResult
from provisioner.run.session import HostJob, host_session
from provisioner.run.strategies import in_parallel, in_serial_batches
from provisioner.secrets.redaction import redact
from provisioner.secrets.values import Secret
from provisioner.transport.kept_logins import prepare_keepers


@dataclass(frozen=True)
class RunOptions:
    check: bool = False
    diff: bool = False
    parallel: int = 10
    roles: tuple[str, ...] = ()
    role_dirs: tuple[Path, ...] | None = None
    #: Hosts per batch, batch after batch, stopping after a batch with a failure; 0 = all hosts
    #: in parallel (at most ``parallel`` at once).
    serial: int = 0


def prepare(hosts: Sequence[HostConfig], options: RunOptions,
            inventory: InventoryView | None = None) -> list[HostJob]:
    """Load roles and check every host's variables; raises RoleError before any host is touched.

    ``inventory`` is what roles may read of the other hosts (by default only these)."""
    known = available_roles(options.role_dirs)
    view = inventory or InventoryView.of_hosts(hosts)
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
        check_inventory_references(roles, config, variables, view)
        jobs.append(HostJob(config, roles, variables, view))
    return jobs


def run(jobs: Sequence[HostJob], options: RunOptions, listener: Listener) -> RunResult:
    """Apply each job's roles to its host: in parallel (at most options.parallel at once), or in
    serial batches of options.serial hosts that stop after a batch with a failure."""
    prepare_keepers([job.config for job in jobs], max(1, min(options.parallel, len(jobs))))
    work = partial(_run_host, options=options, listener=listener)
    if options.serial:
        results = in_serial_batches(jobs, work, options.serial, workers=options.parallel)
        for result in results:
            if result.skipped:
                listener.host_finished(result)
    else:
        results = in_parallel(jobs, work, options.parallel)
    return RunResult({result.name: result for result in results}, check=options.check)


def _run_host(job: HostJob, options: RunOptions, listener: Listener) -> HostResult:
    result = HostResult(job.config.name)
    started = time.monotonic()
    listener.host_started(job.config.name)
    try:
        _walk_host(job, options, listener, result)
    except ProvisionerError as error:
        result.error = str(error)
    except _Bug as bug:
        result.error = str(bug)
    except Exception:  # a bug outside the walk: the inventory's secrets are all it knows
        result.error = _bug_report(secrets_in(job.variables))
    result.duration = time.monotonic() - started
    listener.host_finished(result)
    return result


def _walk_host(job: HostJob, options: RunOptions, listener: Listener,
               result: HostResult) -> None:
    """Walk the host's roles in a session, counting its round trips into ``result``."""
    name = job.config.name

    def record(change: Change) -> None:
        result.changes.append(change)
        listener.step_finished(name, change)

    with host_session(job, check=options.check, diff=options.diff) as session:
        walk = session.walk(record, partial(listener.action_started, name),
                            partial(listener.action_progress, name))
        try:
            if walk.run() and walk.facts_changed:
                session.facts()  # remembered for the next run (Step.changes_facts)
        except ProvisionerError:
            raise
        except Exception as error:  # a bug, a role's or ours: this host fails with its
            # traceback (masked of the values the walk read on the host too), the other hosts
            # go on, and the summary and the report are still written.
            raise _Bug(_bug_report(walk.secrets)) from error
        finally:
            result.round_trips = session.round_trips
            result.connection = "reused" if session.reused else "new"


class _Bug(Exception):
    """An unexpected exception during a walk, already turned into its masked report."""


def _bug_report(secrets: Sequence[Secret]) -> str:
    return ("internal error (a bug: please report it with this traceback):\n"
            + redact(traceback.format_exc(), secrets))


def gather_facts(config: HostConfig) -> Facts:
    """Facts of one host (for ``invoke facts``): one login, one round trip."""
    with host_session(HostJob(config, (), {}), check=True) as session:
        return session.facts()
