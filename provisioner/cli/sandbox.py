"""What the ``sandbox.*`` and ``demo`` tasks do: local machines, their inventory, the demo."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from provisioner import sandbox
from provisioner.cli import DEFAULT_INVENTORY, load, run_hosts, select_jobs, split_names
from provisioner.run.engine import RunOptions


def up(count: int, suite: str, variant: str, say: Callable[[str], None] = print) -> None:
    """Boot machines and write the default inventory for them."""
    machines = sandbox.up(count=count, suite=suite, progress=say, variant=variant)
    sandbox.write_inventory(machines, DEFAULT_INVENTORY)
    for machine in machines:
        say(f"{machine.name}  {machine.address}  {machine.suite}  {machine.variant}")
    say(f"inventory written to {DEFAULT_INVENTORY}")


def down(name: str) -> str:
    """Stop the named machines (all without names), close their kept logins, keep the default
    inventory listing the sandbox machines still running; says what it did."""
    from provisioner.transport.kept_logins import close_keepers

    names = split_names(name)
    leaving = [machine for machine in sandbox.list_machines() if not names or machine.name in names]
    close_keepers({machine.address for machine in leaving})
    sandbox.down(list(names) or None)
    remaining = [machine for machine in sandbox.list_machines()
                 if machine.name.startswith("sandbox")]
    removed = not remaining and DEFAULT_INVENTORY.exists()
    if remaining:
        sandbox.write_inventory(remaining, DEFAULT_INVENTORY)
    elif removed:
        DEFAULT_INVENTORY.unlink()
    return sandbox_down_message(names, [machine.name for machine in leaving],
                                [machine.name for machine in remaining], DEFAULT_INVENTORY,
                                removed)


def demo(count: int, suite: str) -> int:
    """Boot, provision, provision again (0 changed), verify; narrated; the exit code."""
    from provisioner.verify.runner import verify_host

    up(count, suite, "standard")
    inventory = load(str(DEFAULT_INVENTORY))
    print("\n== first run: converge the fresh machines")
    first = run_hosts(inventory, "", "", RunOptions())
    print("\n== second run: nothing should change")
    second = run_hosts(inventory, "", "", RunOptions())
    print("\n== verify: testinfra specs of every role")
    codes = [verify_host(job) for job in select_jobs(inventory, "", "", RunOptions())]
    changed = sum(result.count("changed") for result in second.hosts.values())
    print(f"\nfirst run exit {first.exit_code}; second run changed {changed} step(s); "
          f"verify {'passed' if not any(codes) else 'FAILED'}. "
          f"Log in with: invoke sandbox.ssh; remove with: invoke sandbox.down")
    return max(first.exit_code, second.exit_code, 1 if any(codes) else 0)


def list_lines() -> list[str]:
    rows = [(machine.name, machine.address, machine.suite, machine.pid)
            for machine in sandbox.list_machines()]
    return sandbox_list_lines(rows)


def sandbox_down_message(asked: Sequence[str], stopped: Sequence[str],
                         remaining: Sequence[str], inventory: Path,
                         inventory_removed: bool) -> str:
    """What ``invoke sandbox.down`` did, or that there was nothing to do."""
    if not stopped:
        if asked:
            running = ", ".join(remaining) or "none"
            return (f"no sandbox machine named {', '.join(asked)} is running (running: "
                    f"{running}); nothing stopped.")
        return "no sandbox machines are running; nothing to stop."
    lines = [f"stopped and deleted {', '.join(stopped)}"]
    if remaining:
        lines.append(f"still running: {', '.join(remaining)} ({inventory} lists them)")
    elif inventory_removed:
        lines.append(f"removed {inventory}")
    return "\n".join(lines)


def sandbox_list_lines(rows: Sequence[tuple[str, str, str, int]]) -> list[str]:
    """``invoke sandbox.list``: an aligned table of (name, address, suite, pid), or a sentence
    saying there is none and how to start one."""
    if not rows:
        return ["no sandbox machines are running (start one with: invoke sandbox.up)"]
    table = [("name", "address", "suite", "pid"), *((n, a, s, str(p)) for n, a, s, p in rows)]
    widths = [max(len(row[column]) for row in table) for column in range(3)]
    return ["  ".join(cell.ljust(width) for cell, width in zip(row[:3], widths, strict=True))
            + "  " + row[3] for row in table]
