"""What the ``deploy``, ``rollback`` and ``deploy.*`` invoke tasks do.

A deploy ships the release of a role that has one (``release(host)``, provisioner/release.py)
to the chosen hosts (every host with such a role when none is chosen); the rollout itself is
provisioner/deploy/rollout.py. Everything the command line can get wrong (a version that can
be no tag, a host without an app) is said before any contact, exit 2; what a host says no to
is exit 1.
"""

from __future__ import annotations

import getpass
import socket
from collections.abc import Callable

from provisioner.cli import select_jobs
from provisioner.cli.backup import now as backup_now
from provisioner.cli.backup import print_output
from provisioner.commands import quote
from provisioner.deploy import history, lock
from provisioner.deploy.rollout import Request, Show, Target, history_path, lock_path
from provisioner.deploy.rollout import deploy as roll_out
from provisioner.errors import ProvisionerError
from provisioner.facts import Facts
from provisioner.host import Host
from provisioner.inventory.hosts import Inventory
from provisioner.release import VERSION, Release
from provisioner.run.engine import RunOptions
from provisioner.run.session import HostJob, host_session


def check_version(version: str, flag: str = "--version") -> str:
    if not version or not VERSION.fullmatch(version):
        raise ProvisionerError(f"{flag} {version!r} cannot be a version: it is an image tag "
                               "of letters, digits, '_', '.' and '-' (at most 128, not "
                               "starting with '.' or '-'), such as --version v1.2.1.")
    return version


def _no_facts() -> Facts:
    raise ProvisionerError("a release is read from the inventory alone, never from facts")


def release_of(job: HostJob) -> Release | None:
    """The release of the job's role that ships one (the first, in the roles' order)."""
    for role in job.roles:
        if role.release is not None:
            host = Host(job.config, job.variables, _no_facts, inventory=job.inventory)
            return role.release(host.for_role(role.template_dir))
    return None


def targets(inventory: Inventory, hosts: str, group: str) -> list[Target]:
    """The chosen hosts with their releases; a chosen host without one is a mistake."""
    jobs = select_jobs(inventory, hosts, group, RunOptions())
    found = [(job, release_of(job)) for job in jobs]
    without = [job.config.name for job, release in found if release is None]
    if (hosts or group) and without:
        verb = "ships" if len(without) == 1 else "ship"
        raise ProvisionerError(f"{', '.join(without)} of {inventory.path} {verb} no release "
                               "(no role with releases, such as app, among its roles): "
                               "choose hosts with the app role.")
    chosen = [Target(job, release) for job, release in found if release is not None]
    for target in chosen:
        artifact = target.release.artifact("v")
        if artifact is not None and not artifact.local.parent.is_dir():
            raise ProvisionerError(f"host {target.name}: app_archive_dir "
                                   f"{artifact.local.parent} is not a directory on this "
                                   "machine; it holds the <app_name>-<version>.tar archives "
                                   "(docker save) the deploys send.")
    if not chosen:
        raise ProvisionerError(f"no host of {inventory.path} has a role that ships releases "
                               "(the app role): add it to the application hosts first.")
    return chosen


def who() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def deploy(inventory: Inventory, hosts: str, group: str, version: str, message: str = "",
           batch: int = 1, show: Show = print_output, action: str = "deploy") -> int:
    check_version(version)
    if batch < 1:
        raise ProvisionerError(f"--batch {batch}: at least 1 host at a time.")
    chosen = targets(inventory, hosts, group)
    request = Request(version, action, who(), message, batch, backups_on(inventory, show))
    return roll_out(chosen, request, show)


def backups_on(inventory: Inventory, show: Show) -> Callable[[str], int]:
    """The backup a deploy runs before its migration: ``backup.now`` on the named host."""
    return lambda host: backup_now(inventory, host, "", show)


def rollback(inventory: Inventory, hosts: str, group: str, to: str = "", message: str = "",
             show: Show = print_output) -> int:
    """The deploy of ``to``, else of the version that served before the current one on the
    first chosen host (its history says which)."""
    chosen = targets(inventory, hosts, group)
    if to:
        check_version(to, "--to")
    else:
        to = previous_version(chosen[0], show)
        if not to:
            return 1
    return roll_out(chosen, Request(to, "rollback", who(), message, 1,
                                    backups_on(inventory, show)), show)


def previous_version(target: Target, show: Show) -> str:
    """The rollback's version, from the first chosen host's instances and history."""
    release = target.release
    script = f"{release.states()}\necho ==\n{history.read(history_path(release), 500)}"
    with host_session(target.job, check=True) as session:
        states_output, _, entries = session.run_script(script).stdout.partition("==\n")
    serving = {state.version for state in release.parse_states(states_output) if state.version}
    previous = history.rollback_target(history.parse(entries), serving)
    current = " and ".join(sorted(serving)) or "nothing"
    if not previous:
        show(f"{target.name}: no version before {current} is recorded in its history; name "
             "one: invoke rollback --to VERSION.", True)
    else:
        show(f"rolling back from {current} to {previous}", False)
    return previous


def on_host(target: Target, script: str, show: Show) -> str | None:
    """What one script printed on the target's host, or None (said) when it cannot be
    reached: the other hosts of a status, a history or an unlock still get theirs."""
    try:
        with host_session(target.job, check=True) as session:
            return session.run_script(script).stdout
    except ProvisionerError as error:
        show(f"{target.name}: {error}", True)
        return None


def force_unlock(inventory: Inventory, hosts: str, group: str, show: Show = print_output) -> int:
    code = 0
    for target in targets(inventory, hosts, group):
        output = on_host(target, lock.force_release(lock_path(target.release)), show)
        if output is None:
            code = 1
        elif output.strip() == "no lock held":
            show(f"{target.name}: no deploy lock was held.", False)
        else:
            show(f"{target.name}: removed the lock of {lock.parse_record(output).describe()}.",
                 False)
    return code


def status(inventory: Inventory, hosts: str, group: str, show: Show = print_output) -> int:
    """Each instance's port, version and health, and a held deploy lock; 1 when an instance
    is not healthy or never deployed, the versions differ, a lock is held or a host cannot be
    reached (the other hosts are still shown)."""
    codes = [_host_status(target, show) for target in targets(inventory, hosts, group)]
    return max(codes, default=0)


def _host_status(target: Target, show: Show) -> int:
    release = target.release
    lock_file = lock_path(release)
    script = f"{release.states()}\necho ==\ncat {quote(lock_file)} 2>/dev/null; true"
    output = on_host(target, script, show)
    if output is None:
        return 1
    states_output, _, held = output.partition("==\n")
    code, versions = 0, set()
    for state in release.parse_states(states_output):
        label = f"{target.name} {release.name} instance {state.instance}"
        if not state.version:
            show(f"{label}: never deployed", True)
            code = 1
            continue
        versions.add(state.version)
        show(f"{label}: {state.version} on port {state.port}, "
             f"{'healthy' if state.healthy else 'NOT healthy'}", not state.healthy)
        code = code if state.healthy else 1
    if len(versions) > 1:
        show(f"{target.name}: the instances serve different versions "
             f"({', '.join(sorted(versions))}): a deploy did not finish; the next deploy or "
             "rollback takes it from there.", True)
        code = 1
    if held.strip():
        show(f"{target.name}: deploy lock held by {lock.parse_record(held).describe()}", True)
        code = 1
    return code


def show_history(inventory: Inventory, hosts: str, group: str, limit: int = 20,
                 show: Show = print_output) -> int:
    if limit < 1:
        raise ProvisionerError(f"--limit {limit}: at least 1 entry per host.")
    codes = [_host_history(target, limit, show) for target in targets(inventory, hosts, group)]
    return max(codes, default=0)


def _host_history(target: Target, limit: int, show: Show) -> int:
    output = on_host(target, history.read(history_path(target.release), limit), show)
    if output is None:
        return 1
    entries, damaged = history.read_entries(output)
    show(f"== {target.name} ({target.release.name}): the last {len(entries)} recorded"
         + (f"; {damaged} damaged line(s) skipped" if damaged else ""), False)
    show("\n".join(_history_line(entry) for entry in reversed(entries))
         or "(nothing deployed yet)", False)
    return 0


def _history_line(entry: history.Entry) -> str:
    return (f"{entry.started}  {entry.action:8} {entry.version:12} from "
            f"{entry.previous or '-':12} {entry.result:12} {entry.duration_s:6.1f} s  "
            f"{entry.who}{'  ' + entry.detail if entry.detail else ''}")


