"""What the ``backup.*`` invoke tasks do: run the backups role's host program on chosen hosts.

The work happens on the host, in /usr/local/sbin/provisioner-backup (which the backups role
installs); these functions choose the hosts from the inventory, judge the command line before
any contact, run the program as root in one round trip per host, hand its output to ``show``
and return the exit code: 0 done, 1 whatever a host said no to or failed at, once contacted
(a live database without --replace, a file that is not one of its archives, no archive to
verify yet, a backup already running), 2 bad input found before any contact (an unknown host,
a host without the role, a file name that cannot be an archive's). PostgreSQL's own databases
as --into are refused by the host program (the engine names no role, nor its databases).

The tasks themselves are in tasks.py (the ``backup`` collection).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Sequence

from provisioner.cli import select_jobs
from provisioner.commands import join
from provisioner.errors import ProvisionerError
from provisioner.inventory.hosts import Inventory
from provisioner.run.engine import RunOptions
from provisioner.run.session import HostJob, host_session

#: The host program the role installs.
PROGRAM = "/usr/local/sbin/provisioner-backup"
#: A variable only the role that installs the program declares: how a job is known to have it
#: without naming the role (the engine knows no role by name).
ROLE_VARIABLE = "backups_schedule"
#: An archive as ``list`` names it: its run's UTC time (-ondemand when backup.now made it),
#: then one database's dump.
ARCHIVE_FILE = re.compile(r"^\d{8}T\d{6}Z(-ondemand)?/[A-Za-z0-9_][A-Za-z0-9_.-]{0,62}\.dump$")
DATABASE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,62}$")

#: Hears the program's output: (text, True when it is the program's stderr).
Show = Callable[[str, bool], None]


def print_output(text: str, error: bool) -> None:
    """The program's output as a user reads it: its stderr on ours."""
    print(text, file=sys.stderr if error else sys.stdout, flush=True)


def now(inventory: Inventory, hosts: str, group: str, show: Show = print_output) -> int:
    """``backup.now``: a backup on each chosen host, now, as an on-demand archive.

    The host runs it as a systemd unit (``run-now``) and this waits for it: a Ctrl-C or a
    dropped connection ends the waiting, never the backup, and a Ctrl-C says so (a breaker's
    printed nothing while the backup went on)."""
    jobs = backup_jobs(inventory, hosts, group)
    try:
        return _run_everywhere(jobs, ["run-now"], show)
    except KeyboardInterrupt:
        show("backup.now: stopped waiting; a backup already started carries on on the host "
             "(provisioner-backup-ondemand.service) and is pruned, copied and recorded there: "
             "invoke backup.list shows it once done.", True)
        return 1


def list_archives(inventory: Inventory, hosts: str, group: str, show: Show = print_output) -> int:
    """``backup.list``: each chosen host's archives and the records of its last runs."""
    jobs = backup_jobs(inventory, hosts, group)
    return _run_everywhere(jobs, ["list"], show, then=["status"])


def verify(inventory: Inventory, hosts: str, group: str, show: Show = print_output) -> int:
    """``backup.verify``: the restore test on each chosen host, now."""
    return _run_everywhere(backup_jobs(inventory, hosts, group), ["verify"], show)


def restore(inventory: Inventory, host: str, file: str, into: str, replace: bool,
            show: Show = print_output) -> int:
    """``backup.restore``: one archive into its database (or ``into``) on one host."""
    arguments = restore_arguments(host, file, into, replace)
    (job,) = backup_jobs(inventory, host, "")
    return _run(job, arguments, show, lock=True)


def restore_arguments(host: str, file: str, into: str, replace: bool) -> list[str]:
    """The program's arguments; ProvisionerError (exit 2) for what cannot be right."""
    if not host or "," in host:
        raise ProvisionerError("backup.restore needs --host naming exactly one host: a restore "
                               "goes to one database server.")
    if not ARCHIVE_FILE.fullmatch(file):
        raise ProvisionerError(f"--file {file!r} is not an archive as backup.list names them, "
                               "e.g. --file 20261202T020000Z/app.dump (run invoke backup.list "
                               f"--host {host} to see them).")
    if into and not DATABASE_NAME.fullmatch(into):
        raise ProvisionerError(f"--into {into!r} is not a database name the backup program "
                               "restores into: letters, digits, '_', '.' and '-', at most 63.")
    return ["restore", file, *(["--into", into] if into else []),
            *(["--replace"] if replace else [])]


def backup_jobs(inventory: Inventory, hosts: str, group: str) -> list[HostJob]:
    """The chosen hosts (every host with the role when none is chosen), checked as provision
    checks them; a chosen host without the role is a mistake, said before any contact."""
    jobs = select_jobs(inventory, hosts, group, RunOptions())
    with_role = [job for job in jobs if has_backups(job)]
    without = [job.config.name for job in jobs if not has_backups(job)]
    if (hosts or group) and without:
        raise ProvisionerError(f"{', '.join(without)} of {inventory.path} "
                               f"{'has' if len(without) == 1 else 'have'} no backups role, so "
                               "no backup program; add the role to the host (or its group) and "
                               "provision it, or choose a database host.")
    if not with_role:
        raise ProvisionerError(f"no host of {inventory.path} has the backups role; add it to "
                               "a database host's roles and provision it first.")
    return with_role


def has_backups(job: HostJob) -> bool:
    return any(ROLE_VARIABLE in role.defaults for role in job.roles)


def _run_everywhere(jobs: Sequence[HostJob], arguments: list[str], show: Show,
                    then: Sequence[str] = ()) -> int:
    codes = [_run(job, arguments, show, then=then, heading=len(jobs) > 1) for job in jobs]
    return max(codes, default=0)


def _run(job: HostJob, arguments: Sequence[str], show: Show, *, lock: bool = False,
         then: Sequence[str] = (), heading: bool = False) -> int:
    """The program on one host in one round trip; a host that cannot be reached is exit 1."""
    script = join(PROGRAM, *arguments)
    if then:
        script = f"{script} && {join(PROGRAM, *then)}"
    try:
        with host_session(job, check=not lock) as session:
            result = session.run_script(script)
    except ProvisionerError as error:
        show(f"{job.config.name}: {error}", True)
        return 1
    if heading:
        show(f"== {job.config.name}", False)
    if result.stdout.strip():
        show(result.stdout.rstrip("\n"), False)
    if result.stderr.strip():
        show(result.stderr.rstrip("\n"), True)
    if result.exit_code == 127:
        show(f"{job.config.name}: {PROGRAM} is not there yet; provision the host first.", True)
    return exit_code(result.exit_code)


def exit_code(program_exit: int) -> int:
    """The task's code for the program's: every failure is 1, since the host was contacted
    (2 is the tasks' code for what is wrong before any contact; the program's own 2, such as
    a file that is none of its archives, 3 refused and 4 nothing to verify are all the host
    saying no)."""
    return 0 if program_exit == 0 else 1
