"""Command line of provisioner: ``invoke --list`` shows tasks, ``invoke --help TASK`` flags."""

from __future__ import annotations

import functools
import os
import subprocess
import sys
from collections.abc import Callable
from typing import Any, TypeVar

from invoke import Collection, Context, Exit, task

F = TypeVar("F", bound=Callable[..., Any])

HOST_HELP = {
    "host": "Host name(s) from the inventory, comma-separated (default: every host).",
    "group": "Every host of this inventory group.",
    "inventory": "Inventory file (default: $PROVISIONER_INVENTORY or inventories/sandbox.yml).",
}


def user_errors(function: F) -> F:
    """Turn a ProvisionerError into its one-paragraph message and exit code 2, no traceback."""
    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from provisioner.errors import ProvisionerError

        try:
            return function(*args, **kwargs)
        except ProvisionerError as error:
            raise Exit(f"error: {error}", code=2) from None
    return wrapper  # type: ignore[return-value]


@task(help={**HOST_HELP,
            "check": "Show what would change; change nothing on any host.",
            "diff": "Print unified diffs of file changes (secrets redacted).",
            "report": "Write a JSON report to this file.",
            "roles": "Run only these roles, comma-separated (e.g. hardening,ufw).",
            "parallel": "How many hosts to work on at once (default 10).",
            "set": "Override a variable: --set name=value (repeatable; highest precedence).",
            "profile": "Print the slowest steps after the run."},
      iterable=["set"])
@user_errors
def provision(c: Context, host: str = "", group: str = "", inventory: str = "",
              check: bool = False, diff: bool = False, report: str = "", roles: str = "",
              parallel: int = 10, set: list[str] | None = None, profile: bool = False) -> None:
    """Apply each host's roles from the inventory; a second run changes nothing.

    Example: invoke provision --host prod1 --check --diff
    """
    from provisioner import cli
    from provisioner.engine import RunOptions

    options = RunOptions(check=check, diff=diff, parallel=parallel, roles=cli.split_names(roles))
    result = cli.provision(cli.load(inventory, set or []), host, group, options, report, profile)
    raise Exit(code=result.exit_code)


@task(help={**HOST_HELP, "roles": "Verify only these roles, comma-separated.",
            "set": "Override a variable as for provision (repeatable).",
            "pytest_args": "Extra arguments for pytest, e.g. '-k ssh -x'."},
      iterable=["set"])
@user_errors
def verify(c: Context, host: str = "", group: str = "", inventory: str = "", roles: str = "",
           set: list[str] | None = None, pytest_args: str = "") -> None:
    """Prove each host matches its roles' specs with pytest-testinfra (over OpenSSH).

    Example: invoke verify --host prod1
    """
    from provisioner import cli
    from provisioner.engine import RunOptions
    from provisioner.verify import verify_host

    options = RunOptions(roles=cli.split_names(roles))
    jobs = cli.select_jobs(cli.load(inventory, set or []), host, group, options)
    codes = [verify_host(job, pytest_args.split()) for job in jobs]
    raise Exit(code=1 if any(codes) else 0)


@task(help=HOST_HELP)
@user_errors
def facts(c: Context, host: str = "", group: str = "", inventory: str = "") -> None:
    """Print what the engine knows about each host (OS, CPUs, RAM, disks, OpenSSH...).

    Example: invoke facts --host sandbox1
    """
    from provisioner import cli

    cli.show_facts(cli.load(inventory), host, group)


@task(help=HOST_HELP)
@user_errors
def disconnect(c: Context, host: str = "", group: str = "", inventory: str = "") -> None:
    """Close the SSH logins kept open between runs (all, or the hosts selected).

    Runs keep a login per host open for ssh.control_persist seconds (default 300) for the next
    run to reuse; this closes them now.

    Example: invoke disconnect --host prod1
    """
    from provisioner import cli

    selected = cli.load(inventory) if host or group or inventory else None
    print(cli.disconnect(selected, host, group))


@task(help={"count": "How many machines (default 1; running ones are kept).",
            "suite": "Debian suite: bookworm (default) or trixie."})
@user_errors
def up(c: Context, count: int = 1, suite: str = "bookworm") -> None:
    """Boot local throwaway Debian machines and write inventories/sandbox.yml for them.

    Example: invoke sandbox.up --count 3 --suite trixie
    """
    from provisioner import sandbox
    from provisioner.cli import DEFAULT_INVENTORY

    machines = sandbox.up(count=count, suite=suite, progress=print)
    sandbox.write_inventory(machines, DEFAULT_INVENTORY)
    for machine in machines:
        print(f"{machine.name}  {machine.address}  {machine.suite}")
    print(f"inventory written to {DEFAULT_INVENTORY}")


@task(help={"name": "Stop only these machines, comma-separated (default: all)."})
@user_errors
def down(c: Context, name: str = "") -> None:
    """Stop and delete sandbox machines, their network and state (the image cache stays)."""
    from provisioner import sandbox
    from provisioner.cli import DEFAULT_INVENTORY, split_names
    from provisioner.connection_reuse import close_keepers

    names = split_names(name)
    leaving = [machine for machine in sandbox.list_machines() if not names or machine.name in names]
    close_keepers({machine.address for machine in leaving})
    sandbox.down(list(names) or None)
    remaining = [machine for machine in sandbox.list_machines()
                 if machine.name.startswith("sandbox")]
    if remaining:
        sandbox.write_inventory(remaining, DEFAULT_INVENTORY)
    elif DEFAULT_INVENTORY.exists():
        DEFAULT_INVENTORY.unlink()


@task(name="ssh", help={"name": "Machine name (default sandbox1).",
                        "user": "Login user (default admin)."})
@user_errors
def ssh_(c: Context, name: str = "sandbox1", user: str = "admin") -> None:
    """Open an interactive SSH session on a sandbox machine (host key checked)."""
    from provisioner import sandbox

    machines = {machine.name: machine for machine in sandbox.list_machines()}
    if name not in machines:
        raise Exit(f"error: no running sandbox machine {name!r}; running: "
                   f"{', '.join(machines) or 'none'} (start with invoke sandbox.up).", code=2)
    argv = sandbox.ssh_argv(machines[name], user)
    os.execvp(argv[0], argv)


@task(name="list")
@user_errors
def list_(c: Context) -> None:
    """List running sandbox machines."""
    from provisioner import sandbox

    for machine in sandbox.list_machines():
        print(f"{machine.name}  {machine.address}  {machine.suite}  pid {machine.pid}")


@task(help={"count": "How many sandbox machines (default 1).",
            "suite": "Debian suite: bookworm (default) or trixie."})
@user_errors
def demo(c: Context, count: int = 1, suite: str = "bookworm") -> None:
    """Boot sandbox machines, provision them, provision again (0 changed), and verify them."""
    from provisioner import cli
    from provisioner.engine import RunOptions
    from provisioner.verify import verify_host

    up(c, count=count, suite=suite)
    inventory = cli.load(str(cli.DEFAULT_INVENTORY))
    print("\n== first run: converge the fresh machines")
    first = cli.provision(inventory, "", "", RunOptions())
    print("\n== second run: nothing should change")
    second = cli.provision(inventory, "", "", RunOptions())
    print("\n== verify: testinfra specs of every role")
    codes = [verify_host(job) for job in cli.select_jobs(inventory, "", "", RunOptions())]
    changed = sum(result.count("changed") for result in second.hosts.values())
    print(f"\nfirst run exit {first.exit_code}; second run changed {changed} step(s); "
          f"verify {'passed' if not any(codes) else 'FAILED'}. "
          f"Log in with: invoke sandbox.ssh; remove with: invoke sandbox.down")
    raise Exit(code=max(first.exit_code, second.exit_code, 1 if any(codes) else 0))


@task(help={"unit": "Only the unit tests (no sandbox machines).",
            "pytest_args": "Extra arguments for pytest."})
def test(c: Context, unit: bool = False, pytest_args: str = "") -> None:
    """Run the tests: lint, types, unit tests, integration tests on sandbox machines, bench smoke.

    Example: invoke test --unit
    """
    steps = [[sys.executable, "-m", "ruff", "check", "."],
             [sys.executable, "-m", "mypy"],
             [sys.executable, "-m", "pytest", "tests/unit", "-q"]]
    if not unit:
        steps.append([sys.executable, "-m", "pytest", "tests/integration", "-m", "integration",
                      "-v", *pytest_args.split()])
        steps.append([sys.executable, "-m", "benchmarks.run", "--reps", "1", "--smoke"])
    for command in steps:
        print("$ " + " ".join(command), flush=True)
        if subprocess.run(command, check=False).returncode != 0:
            raise Exit(code=1)


@task(help={"reps": "Alternated repetitions per scenario (default 5).",
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


sandbox_tasks = Collection("sandbox", up, down, ssh_, list_)
ns = Collection(provision, verify, facts, disconnect, demo, test, bench)
ns.add_collection(sandbox_tasks)
