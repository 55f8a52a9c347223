"""The sandbox.* tasks: boot, list, reach and delete local throwaway machines."""

from __future__ import annotations

import os

from invoke.collection import Collection
from invoke.context import Context
from invoke.exceptions import Exit
from invoke.tasks import task

from provisioner.task_flags import FlagTask, user_errors


@task(klass=FlagTask, help={"count": "How many machines (default 1; running ones are kept).",
            "suite": "Debian suite: bookworm (default) or trixie.",
            "variant": "Image: standard (default) or minimal (no kmod, iproute2, python3)."})
@user_errors
def up(c: Context, count: int = 1, suite: str = "bookworm", variant: str = "standard") -> None:
    """Boot local throwaway Debian machines and write inventories/sandbox.yml for them.

    Example: invoke sandbox.up --count 3 --suite trixie --variant minimal
    """
    from provisioner.cli import sandbox

    sandbox.up(count, suite, variant)


@task(klass=FlagTask, help={"name": "Stop only these machines, comma-separated (default: all)."})
@user_errors
def down(c: Context, name: str = "") -> None:
    """Stop and delete sandbox machines, their network and state (the image cache stays)."""
    from provisioner.cli import sandbox

    print(sandbox.down(name))


@task(klass=FlagTask, name="ssh", help={"name": "Machine name (default sandbox1).",
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


@task(klass=FlagTask, name="list")
@user_errors
def list_(c: Context) -> None:
    """List running sandbox machines, or say that none is running."""
    from provisioner.cli import sandbox

    print("\n".join(sandbox.list_lines()))


collection = Collection("sandbox", up, down, ssh_, list_)
