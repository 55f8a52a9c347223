"""Command line of provisioner: ``invoke --list`` shows tasks, ``invoke --help TASK`` flags."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

from invoke import Collection, Context, Exit, Task, task

from provisioner.task_flags import FlagTask, user_errors
from provisioner.tasks import sandbox as sandbox_tasks

HOST_HELP = {
    "host": "Host name(s) from the inventory, comma-separated (default: every host).",
    "group": "Every host of this inventory group.",
    "inventory": "Inventory file (default: $PROVISIONER_INVENTORY or inventories/sandbox.yml).",
}


@task(klass=FlagTask,
      help={**HOST_HELP,
            "check": "Show what would change; change nothing on any host.",
            "diff": "Print unified diffs of file changes (secrets redacted).",
            "report": "Write a JSON report to this file (0600).",
            "roles": "Run only these roles, comma-separated (e.g. hardening,ufw).",
            "parallel": "How many hosts to work on at once (default 10).",
            "set": "Override a variable: --set name=value (repeatable; highest precedence).",
            "profile": "Print the slowest steps and each host's time after the run.",
            "serial": "Work on N hosts at a time, batch after batch, and start no further "
                      "batch after one in which a host failed (default 0: all at once).",
            "html": "Write the host report of the run's hosts to this HTML file (0600): "
                    "steps and diffs, verify, deploys, backups, certificates, audit."},
      iterable=["set"])
@user_errors
def provision(c: Context, host: str | None = None, group: str | None = None, inventory: str = "",
              check: bool = False, diff: bool = False, report: str = "", roles: str = "",
              parallel: int = 10, set: list[str] | None = None, profile: bool = False,
              serial: int = 0, html: str = "") -> None:
    """Apply each host's roles from the inventory; a second run changes nothing.

    Example: invoke provision --host prod1 --check --diff
    """
    from provisioner import cli
    from provisioner.run.engine import RunOptions

    cli.check_run_flags(parallel, report, serial, html)
    host, group = cli.selection(host, group)
    options = RunOptions(check=check, diff=diff, parallel=parallel, roles=cli.split_names(roles),
                         serial=serial)
    raise Exit(code=cli.provision(cli.load(inventory, set or []), host, group, options, report,
                                  profile, html))


@task(klass=FlagTask, help={**HOST_HELP, "roles": "Verify only these roles, comma-separated.",
            "set": "Override a variable as for provision (repeatable).",
            "pytest_args": "Extra arguments for pytest, e.g. '-k ssh -x'."},
      iterable=["set"])
@user_errors
def verify(c: Context, host: str | None = None, group: str | None = None, inventory: str = "",
           roles: str = "",
           set: list[str] | None = None, pytest_args: str = "") -> None:
    """Prove each host matches its roles' specs with pytest-testinfra (over OpenSSH).

    Example: invoke verify --host prod1
    """
    from provisioner import cli
    from provisioner.run.engine import RunOptions

    options = RunOptions(roles=cli.split_names(roles))
    host, group = cli.selection(host, group)
    raise Exit(code=cli.verify(cli.load(inventory, set or []), host, group, options,
                               pytest_args.split()))


@task(klass=FlagTask, help={**HOST_HELP, "json": "Print JSON (every fact, sizes in bytes) "
                                                  "for programs instead of the table."})
@user_errors
def facts(c: Context, host: str | None = None, group: str | None = None, inventory: str = "",
          json: bool = False) -> None:
    """Print what the engine knows about each host (OS, CPUs, RAM, disks, OpenSSH...).

    Example: invoke facts --host sandbox1
    """
    from provisioner import cli
    from provisioner.errors import ProvisionerError

    host, group = cli.selection(host, group)
    text, failures = cli.facts_report(cli.load(inventory), host, group, as_json=json)
    if text:
        print(text, flush=True)
    if failures:
        raise ProvisionerError("\n".join(failures))


@task(klass=FlagTask, help=HOST_HELP)
@user_errors
def disconnect(c: Context, host: str | None = None, group: str | None = None,
               inventory: str = "") -> None:
    """Close the SSH logins kept open between runs (all, or the hosts selected).

    Runs keep a login per host open for ssh.control_persist seconds (default 300) for the next
    run to reuse; this closes them now. Secrets are not read, so their environment variables
    need not be set.

    Example: invoke disconnect --host prod1
    """
    from provisioner import cli

    host, group = cli.selection(host, group)
    selected = cli.load(inventory, resolve_secrets=False) if host or group or inventory else None
    print(cli.disconnect(selected, host, group))


@task(klass=FlagTask, name="list", help=HOST_HELP)
@user_errors
def secrets_list(c: Context, host: str | None = None, group: str | None = None,
                 inventory: str = "") -> None:
    """List each host's secrets by name, kind and age; values are never shown.

    Example: invoke secrets.list --host db1
    """
    from provisioner import cli
    from provisioner.cli import secrets as secrets_cli

    host, group = cli.selection(host, group)
    loaded = cli.load(inventory)
    for config in cli.selected_hosts(loaded, host, group):
        print(secrets_cli.list_secrets(config), flush=True)


@task(klass=FlagTask, help={"host": "The host whose secret to rotate (one host).",
                            "name": "The secret's name, as declared under host_secrets.",
                            "inventory": HOST_HELP["inventory"]})
@user_errors
def rotate(c: Context, host: str = "", name: str = "", inventory: str = "") -> None:
    """Give one host secret a new value on purpose, then update everything that uses it.

    The host is provisioned right after, so its roles (PostgreSQL's role password, PgBouncer's
    userlist, an app's environment) take the new value in the inventory's order.

    Example: invoke secrets.rotate --host db1 --name db_password
    """
    from provisioner import cli
    from provisioner.cli import secrets as secrets_cli
    from provisioner.errors import ProvisionerError
    from provisioner.run.engine import RunOptions

    if not host or not name or "," in host:
        raise ProvisionerError("secrets.rotate needs --host HOST (one host) and --name SECRET.")
    raise Exit(code=secrets_cli.rotate(cli.load(inventory), host, name, RunOptions()))


def host_program_task(name: str, work: str, summary: str, example: str) -> Task[Any]:
    """A task running one subcommand of a role's host program on the selected hosts (the
    backup tasks: ``work`` names the function of provisioner/cli/backup.py that does it)."""
    def body(c: Context, host: str | None = None, group: str | None = None,
             inventory: str = "") -> None:
        from provisioner import cli
        from provisioner.cli import backup

        host, group = cli.selection(host, group)
        raise Exit(code=getattr(backup, work)(cli.load(inventory), host, group))

    body.__doc__ = f"{summary}\n\n    Example: {example}\n    "
    body.__name__ = f"backup_{name}"
    return task(klass=FlagTask, name=name, help=HOST_HELP)(user_errors(body))


backup_now = host_program_task(
    "now", "now", "Dump every managed database and the globals now (and copy them off the host), "
    "as a systemd unit that finishes even if the connection drops.",
    "invoke backup.now --host db1")
backup_list = host_program_task(
    "list", "list_archives", "List each host's archives, newest first, and its last runs' "
    "records.", "invoke backup.list --host db1")
backup_verify = host_program_task(
    "verify", "verify", "Restore the latest archive into a scratch database and check its row "
    "counts, now.", "invoke backup.verify --host db1")


@task(klass=FlagTask, name="restore",
      help={"host": "The host whose archive to restore (one host).",
            "inventory": HOST_HELP["inventory"], "file": "The archive, as backup.list names it "
                                 "(20261202T020000Z/app.dump).",
            "into": "Restore into this database (default: the one dumped).",
            "replace": "Replace the database if it exists (its sessions are ended)."})
@user_errors
def backup_restore(c: Context, host: str | None = None, inventory: str = "", file: str = "",
                   into: str = "", replace: bool = False) -> None:
    """Restore one archive on one host; a live database only with --replace.

    Example: invoke backup.restore --host db1 --file 20261202T020000Z/app.dump
    """
    from provisioner import cli
    from provisioner.cli import backup

    host, _ = cli.selection(host, None)
    raise Exit(code=backup.restore(cli.load(inventory), host or "", file, into, replace))


@task(klass=FlagTask, help={"count": "How many sandbox machines (default 1).",
                           "suite": "Debian suite: bookworm (default) or trixie."})
@user_errors
def demo(c: Context, count: int = 1, suite: str = "bookworm") -> None:
    """Boot sandbox machines, provision them, provision again (0 changed), and verify them."""
    from provisioner.cli import sandbox

    raise Exit(code=sandbox.demo(count, suite))


@task(help={"unit": "Only the unit tests (no sandbox machines).",
            "pytest_args": "Extra arguments for pytest (every integration run)."})
def test(c: Context, unit: bool = False, pytest_args: str = "") -> None:
    """Run the tests: lint, types, unit tests, integration tests on sandbox machines, bench smoke.

    The integration tests run on Debian 12, and beside it on Debian 13 and the minimal image
    (provisioner/cli/suite.py); with PROVISIONER_TEST_SUITE or PROVISIONER_TEST_VARIANT set
    they run once, all of them, on that target only.

    Example: invoke test --unit
    """
    from provisioner.cli import suite

    if not suite.run_suite(unit, pytest_args):
        raise Exit(code=1)


@task(klass=FlagTask, help={"reps": "Alternated repetitions per scenario (default 5).",
            "scenarios": "Comma-separated scenario names (default: all; see benchmarks/README.md).",
            "tools": "Comma-separated tools: floor,pyinfra,ansible,ansible-tuned,provisioner.",
            "smoke": "One rep, provisioner only, one host: proves the runner works (used by CI)."})
def bench(c: Context, reps: int = 5, scenarios: str = "", tools: str = "",
          smoke: bool = False) -> None:
    """Benchmark provisioner against the raw-SSH floor, pyinfra and Ansible on sandbox machines.

    Example: invoke bench --reps 5
    """
    command = [sys.executable, "-m", "benchmarks.run", "--reps", str(reps)]
    command += ["--scenarios", scenarios] if scenarios else []
    command += ["--tools", tools] if tools else []
    command += ["--smoke"] if smoke else []
    raise Exit(code=subprocess.run(command, check=False).returncode)


@task(klass=FlagTask, help={**HOST_HELP, "min_index": "Exit 1 when a host's hardening index is "
                                                       "below this (0-100; default 0).",
                            "parallel": "How many hosts to audit at once (default 10)."})
@user_errors
def audit(c: Context, host: str | None = None, group: str | None = None, inventory: str = "",
          min_index: int = 0, parallel: int = 10) -> None:
    """Run Lynis on each host (installed when missing): hardening index and top findings, kept.

    Example: invoke audit --host api1 --min-index 85
    """
    from provisioner import cli
    from provisioner.cli import audit as audit_cli

    cli.check_run_flags(parallel, "")
    host, group = cli.selection(host, group)
    raise Exit(code=audit_cli.audit(cli.load(inventory), host, group, min_index, parallel))


@task(klass=FlagTask, help={**HOST_HELP, "html": "Write the page to this HTML file (0600).",
                            "json": "Write the page's data to this JSON file (0600).",
                            "offline": "Draw from this machine's records only; contact no host."})
@user_errors
def report(c: Context, host: str | None = None, group: str | None = None, inventory: str = "",
           html: str = "", json: str = "", offline: bool = False) -> None:
    """Write each host's report: last provision's steps, verify, deploys, backups, certificates.

    Drawn from the records the last provision, verify and audit left on this machine, and the
    host's live status (deploy history, backups, certificates) read in one round trip per host
    (not with --offline). Exit 1 when a host's live status could not be read.

    Example: invoke report --host api1 --html api1.html
    """
    from provisioner import cli
    from provisioner.cli import report as report_cli

    report_cli.check_outputs(html, json)
    host, group = cli.selection(host, group)
    raise Exit(code=report_cli.report(cli.load(inventory), host, group, html, json, offline))


@task(klass=FlagTask, name="status", help=HOST_HELP)
@user_errors
def certs_status(c: Context, host: str | None = None, group: str | None = None,
                 inventory: str = "") -> None:
    """Show each site's certificate: names, issuer, not-after, days left, next renewal.

    Example: invoke certs.status --host web1
    """
    from provisioner import cli
    from provisioner.cli import certs

    host, group = cli.selection(host, group)
    raise Exit(code=certs.status(cli.load(inventory), host, group))


@task(klass=FlagTask, name="deploy",
      help={**HOST_HELP, "version": "The version to deploy (the image tag), e.g. v1.2.1.",
            "message": "Why: kept in the lock and the history.",
            "batch": "Hosts moved before the next ones start (default 1: one at a time).",
            "force_unlock": "Remove the deploy lock of the chosen hosts (a deploy that died "
                            "on another machine), then stop."})
@user_errors
def deploy_(c: Context, host: str | None = None, group: str | None = None,
            inventory: str = "", version: str = "", message: str = "", batch: int = 1,
            force_unlock: bool = False) -> None:
    """Roll a version out instance by instance behind nginx; roll back when one is unhealthy.

    Example: invoke deploy --version v1.2.1 --host api1
    """
    from provisioner import cli
    from provisioner.cli import deploy

    host, group = cli.selection(host, group)
    if not force_unlock:
        deploy.check_version(version)
    loaded = cli.load(inventory)
    if force_unlock:
        raise Exit(code=deploy.force_unlock(loaded, host, group))
    raise Exit(code=deploy.deploy(loaded, host, group, version, message, batch))


@task(klass=FlagTask, help={**HOST_HELP, "to": "The version to go back to (default: the one "
                                               "that served before the current one).",
                            "message": "Why: kept in the lock and the history."})
@user_errors
def rollback(c: Context, host: str | None = None, group: str | None = None,
             inventory: str = "", to: str = "", message: str = "") -> None:
    """Go back to the previous version by exactly the path of deploy (health checks included).

    Example: invoke rollback --host api1
    """
    from provisioner import cli
    from provisioner.cli import deploy

    host, group = cli.selection(host, group)
    raise Exit(code=deploy.rollback(cli.load(inventory), host, group, to, message))


@task(klass=FlagTask, name="status", help=HOST_HELP)
@user_errors
def deploy_status(c: Context, host: str | None = None, group: str | None = None,
                  inventory: str = "") -> None:
    """Show each instance's version, port and health; exit 1 when one is not healthy.

    Example: invoke deploy.status --host api1
    """
    from provisioner import cli
    from provisioner.cli import deploy

    host, group = cli.selection(host, group)
    raise Exit(code=deploy.status(cli.load(inventory), host, group))


@task(klass=FlagTask, name="history", help={**HOST_HELP, "limit": "Entries per host (20)."})
@user_errors
def deploy_history(c: Context, host: str | None = None, group: str | None = None,
                   inventory: str = "", limit: int = 20) -> None:
    """Show what was deployed when on each host, newest first: version, previous, who, result.

    Example: invoke deploy.history --host api1
    """
    from provisioner import cli
    from provisioner.cli import deploy

    host, group = cli.selection(host, group)
    raise Exit(code=deploy.show_history(cli.load(inventory), host, group, limit))


secrets_tasks = Collection("secrets", secrets_list, rotate)
backup_tasks = Collection("backup", backup_now, backup_list, backup_verify, backup_restore)
ns = Collection(provision, verify, facts, disconnect, demo, test, bench, rollback, audit,
                report)
ns.add_collection(sandbox_tasks.collection)
ns.add_collection(secrets_tasks)
ns.add_collection(backup_tasks)
ns.add_collection(Collection("certs", certs_status))
deploy_tasks = Collection("deploy", deploy_status, deploy_history)
deploy_tasks.add_task(deploy_, default=True)
ns.add_collection(deploy_tasks)
