"""A host session: one host's login, facts and Host, the unit every kind of work starts from.

Provisioning walks a host's roles in a session; a deploy sends its own commands in one; the
benchmark times one. The session owns what must happen the same way for all of them: the host
lock of a changing run, the login (kept between runs or new), facts gathered once or recalled
from the host's last run and proven by the host in the first round trip, and the round trips
counted.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

from provisioner.content.roles import Role, check_notifications
from provisioner.errors import RoleError
from provisioner.facts import FACTS_SCRIPT, Facts, facts_complete, parse_facts
from provisioner.facts import remembered as remembered_facts
from provisioner.host import Host
from provisioner.inventory.hosts import HostConfig
from provisioner.inventory.view import InventoryView
from provisioner.ops.secret_store import ensure_host_secrets
from provisioner.run.host_lock import host_lock
from provisioner.run.walk import HostWalk, ProgressCallback, RoleSteps, StepCallback
from provisioner.transport.kept_logins import open_connection
from provisioner.transport.remote import RemoteShell, Result


@dataclass(frozen=True)
class HostJob:
    """Everything needed to work on one host, validated before any connection is opened."""

    config: HostConfig
    roles: tuple[Role, ...]
    variables: dict[str, object]
    #: The inventory's other hosts as roles may read them (group -> names and addresses).
    inventory: InventoryView = field(default_factory=InventoryView)


class HostSession:
    """One connected host. Make it with ``host_session``; it ends with the ``with`` block."""

    def __init__(self, job: HostJob, connection: RemoteShell, *, check: bool = False,
                 diff: bool = False) -> None:
        self.job, self.connection = job, connection
        self.check, self.diff = check, diff
        self._walk: HostWalk | None = None

    @property
    def round_trips(self) -> int:
        """Round trips so far, the fresh logins that proved safeguarded changes included."""
        proofs = self._walk.confirmation_round_trips if self._walk is not None else 0
        return self.connection.round_trips + proofs

    @property
    def reused(self) -> bool:
        """True when the session runs over a login an earlier run left open."""
        return self.connection.reused

    def new_host(self) -> Host:
        """A Host for this session whose facts are gathered (and remembered) on first use."""
        return Host(self.job.config, self.job.variables, self.facts, check=self.check,
                    show_diff=self.diff, inventory=self.job.inventory)

    def facts(self) -> Facts:
        """The host's facts in one round trip, remembered for its next run."""
        output = self.connection.run_script(FACTS_SCRIPT).stdout
        remembered_facts.remember(self.job.config, output)
        return parse_facts(output)

    def run_script(self, script: str, timeout: float | None = None) -> Result:
        """One script as root in one round trip (a deploy's command, say)."""
        return self.connection.run_script(script, timeout=timeout)

    def walk(self, on_change: StepCallback, on_action: Callable[[str], None],
             on_progress: ProgressCallback | None = None) -> HostWalk:
        """The walk of the job's roles, its first round trip already made when the steps could
        be rendered from the facts the host gave last time (see _walk_on_remembered_facts)."""
        def make(host: Host, plan: list[RoleSteps]) -> HostWalk:
            return HostWalk(host, self.connection, plan, on_change, on_action, on_progress)

        remembered = remembered_facts.recall(self.job.config)
        actual = None
        if remembered is not None:
            host = self.new_host()
            host.assume_facts(remembered)
            self._walk, actual = _walk_on_remembered_facts(host, self.job.roles, make)
            if self._walk is not None:
                return self._walk
        host = self.new_host()
        if actual is not None:
            host.settle_facts(actual)  # the real facts, from the round trip just made
        self._walk = make(host, role_steps(host, self.job.roles))
        return self._walk


@contextmanager
def host_session(job: HostJob, *, check: bool = False, diff: bool = False
                 ) -> Iterator[HostSession]:
    """Log in to the job's host (holding its lock unless ``check``: a second changing run must
    not undo this one's safeguards) and close the login at the end."""
    with host_lock(job.config) if not check else nullcontext():
        connection = open_connection(job.config)
        try:
            yield HostSession(job, connection, check=check, diff=diff)
        finally:
            connection.close()


#: Stands for the host's secret store in reports: the walk of a host that declares
#: host_secrets starts with the step generating those it lacks (ops/secret_store.py).
HOST_SECRETS = Role(name="secrets", path=Path(__file__).resolve().parent, defaults={},
                    handlers={}, steps=lambda host: ())


def role_steps(host: Host, roles: Sequence[Role]) -> list[RoleSteps]:
    """Each role's steps, rendered with the host bound to that role's templates; a step that
    notifies a handler its role lacks is refused here, before anything runs."""
    plan = []
    store = ensure_host_secrets(host)
    if store is not None:  # before every role, so each finds the secrets it reads
        plan.append(RoleSteps(HOST_SECRETS, [store]))
    for role in roles:
        try:
            steps = list(role.steps(host.for_role(role.template_dir)))
        except RoleError as error:  # e.g. a group of the inventory it reads does not exist
            raise RoleError(f"role {role.name}: {error}") from None
        check_notifications(role, steps)
        plan.append(RoleSteps(role, steps))
    return plan


def _walk_on_remembered_facts(host: Host, roles: Sequence[Role],
                              make: Callable[[Host, list[RoleSteps]], HostWalk]
                              ) -> tuple[HostWalk | None, Facts | None]:
    """(the walk, when its steps stand, else None; the host's real facts when it gave them).

    Steps rendered from the facts the host gave last time are probed together with the facts
    script; if the host's answer differs (or rendering from the old facts failed), the caller
    renders them again from the real facts, probed in the walk's own first round trip, so
    nothing is ever decided from facts the host did not give in this run."""
    try:
        walk = make(host, role_steps(host, roles))
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
