"""A provision run's outcome on one host as the record the host report is drawn from.

Saved after every run (records.py), not only when a page is asked for, so ``invoke report``
can draw the last run later without contacting the host. Everything in it has been masked
twice: by the walk (the host's secrets, those its steps read) and here again with the
inventory's, since the record outlives the run.

A Change does not say which role made it. The roles' own steps are rendered again from the
host's variables and the facts its run remembered (no contact, a few milliseconds), and each
change goes to the first role, at or after the previous change's, that has a step of its label
or the handler it names: the walk reports a role's steps, handlers and proofs before the next
role's, so anything else (a safeguard's proof, a directory a write made) belongs with the role
before it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from provisioner.change import Change
from provisioner.errors import ProvisionerError
from provisioner.facts import Facts
from provisioner.facts import remembered as remembered_facts
from provisioner.host import Host, secrets_in
from provisioner.records import save_record
from provisioner.run.results import HostResult, RunResult
from provisioner.run.session import HostJob, role_steps
from provisioner.secrets.redaction import redact, redact_diff
from provisioner.secrets.values import Secret

#: The label a handler's Change has: "handler NAME".
HANDLER_PREFIX = "handler "


@dataclass(frozen=True)
class RoleLabels:
    """What identifies a role's changes: its steps' labels and its handlers' names."""

    name: str
    steps: frozenset[str]
    handlers: frozenset[str]


def timestamp(moment: datetime) -> str:
    """A moment as the records write it: ISO 8601, UTC, to the second."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def save_provision_records(inventory_path: Path, jobs: Sequence[HostJob], run: RunResult,
                           diffs: bool, finished: datetime | None = None) -> None:
    """Keep each run host's record (a host the run never started keeps its last one)."""
    moment = finished or datetime.now(UTC)
    for job in jobs:
        result = run.hosts.get(job.config.name)
        if result is not None and not result.skipped:
            record = provision_record(job, result, check=run.check, diffs=diffs,
                                      finished=moment)
            save_record(inventory_path, job.config.name, "provision", record)


def provision_record(job: HostJob, result: HostResult, *, check: bool, diffs: bool,
                     finished: datetime) -> dict[str, Any]:
    """The record of one host's run: counts, timings, and every step grouped by role."""
    secrets = secrets_in(job.variables)
    steps = [step_record(change, secrets) for change in result.changes]
    return {
        "host": result.name,
        "ran_at": timestamp(finished - timedelta(seconds=result.duration)),
        "check": check,
        "diffs_recorded": diffs,
        "ok": result.count("ok"),
        "changed": result.count("changed"),
        "failed": result.count("failed") + result.count("refused") + (1 if result.error else 0),
        "round_trips": result.round_trips,
        "duration_seconds": round(result.duration, 3),
        "connection": result.connection or None,
        "error": redact(result.error, secrets) if result.error else None,
        "roles": group_by_role(steps, role_labels(job)),
    }


def step_record(change: Change, secrets: Sequence[Secret]) -> dict[str, Any]:
    return {"label": redact(change.label, secrets), "status": change.status,
            "reason": redact(change.reason, secrets),
            "diff": redact_diff(change.diff, secrets) if change.diff else None,
            "duration_seconds": round(change.duration, 4)}


class _FactsNotRemembered(ProvisionerError):
    """A role read a fact its host's last run did not leave: its steps cannot be rendered."""


def _no_facts() -> Facts:
    raise _FactsNotRemembered("no remembered facts")


def role_labels(job: HostJob) -> list[RoleLabels]:
    """Each role's step labels, rendered as the run rendered them; a role that cannot be
    rendered without contact keeps only its handlers' names (its steps then join the role
    before them)."""
    host = Host(job.config, job.variables, _no_facts, inventory=job.inventory)
    remembered = remembered_facts.recall(job.config)
    if remembered is not None:
        host.assume_facts(remembered)
    try:
        plan = role_steps(host, job.roles)
    except Exception:  # facts not remembered, a role that changed since: placed by handlers
        return [RoleLabels(role.name, frozenset(), frozenset(role.handlers))
                for role in job.roles]
    return [RoleLabels(part.role.name, frozenset(step.label for step in part.steps),
                       frozenset(part.role.handlers)) for part in plan]


def group_by_role(steps: Sequence[dict[str, Any]], roles: Sequence[RoleLabels]
                  ) -> list[dict[str, Any]]:
    """The steps in run order under their roles (every role listed, a role the run never
    reached with no steps)."""
    if not roles:
        return [{"name": "steps", "steps": list(steps)}]
    groups: list[dict[str, Any]] = [{"name": role.name, "steps": []} for role in roles]
    current = 0
    for step in steps:
        current = role_index(step["label"], roles, current)
        groups[current]["steps"].append(step)
    return groups


def role_index(label: str, roles: Sequence[RoleLabels], current: int) -> int:
    """The first role at or after ``current`` with this step or handler, else ``current``."""
    handler = label[len(HANDLER_PREFIX):] if label.startswith(HANDLER_PREFIX) else None
    for index in range(current, len(roles)):
        if label in roles[index].steps or (handler is not None
                                            and handler in roles[index].handlers):
            return index
    return current
