"""What the invoke tasks do, kept out of tasks.py so tasks stay four lines of intent each."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from provisioner.engine import HostJob, RunOptions, RunResult, gather_facts, prepare, run
from provisioner.errors import ProvisionerError
from provisioner.inventory import Inventory, load_inventory
from provisioner.report import ConsoleReport, slowest_steps, write_report
from provisioner.roles import PROJECT_ROOT, available_roles

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


def load(inventory: str, cli_vars: Iterable[str] = ()) -> Inventory:
    return load_inventory(inventory_path(inventory), available_roles(),
                          parse_cli_vars(cli_vars))


def split_names(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def select_jobs(inventory: Inventory, hosts: str, group: str,
                options: RunOptions) -> list[HostJob]:
    chosen = inventory.select(hosts, group)
    if not chosen:
        raise ProvisionerError(f"No host matched --host {hosts!r} --group {group!r} in "
                               f"{inventory.path}.")
    return prepare(chosen, options)


def provision(inventory: Inventory, hosts: str, group: str, options: RunOptions,
              report: str = "", profile: bool = False) -> RunResult:
    jobs = select_jobs(inventory, hosts, group, options)
    console = ConsoleReport(show_diff=options.diff, check=options.check)
    result = run(jobs, options, console)
    console.summary(result)
    if profile:
        for host, change in slowest_steps(result):
            console.console.print(f"{change.duration:8.3f} s  {host}  {change.label}")
    if report:
        write_report(result, Path(report))
    return result


def show_facts(inventory: Inventory, hosts: str, group: str) -> None:
    console = ConsoleReport().console
    for config in inventory.select(hosts, group):
        facts = gather_facts(config)
        console.print(f"[bold]{config.name}[/bold]")
        for key, value in facts.__dict__.items():
            if key not in ("mounts", "apt_sources"):
                console.print(f"  {key}: {value}")


def disconnect(inventory: Inventory | None, hosts: str, group: str) -> str:
    """Close kept logins: the selected hosts' when an inventory is given, else all of them."""
    from provisioner.connection_reuse import close_keepers

    addresses = None
    if inventory is not None:
        addresses = {config.address for config in inventory.select(hosts, group)}
        if not addresses:
            raise ProvisionerError(f"No host matched --host {hosts!r} --group {group!r} in "
                                   f"{inventory.path}.")
    closed = close_keepers(addresses)
    return f"closed the kept logins to {', '.join(closed)}" if closed else "no kept logins open"
