"""The walk over one host's steps: batched probes, actions with re-probes, handlers, safeguards.

Round trips: one for facts (only if a role reads them), one for the probes of every step of every
role, then one per action (the action and the re-probe of the remaining steps travel together,
because an action can make later probes stale). A converged host therefore costs two round trips
or fewer, whatever the number of steps.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from provisioner.batch import BatchResult, build_batch, parse_batch
from provisioner.change import Change
from provisioner.connection import Connection, open_connection
from provisioner.errors import ProvisionerError
from provisioner.host import Host
from provisioner.inventory import HostConfig
from provisioner.roles import Role
from provisioner.safeguards import arm_action, disarm_action, revert_now_action
from provisioner.secrets import redact
from provisioner.step import Handler, Plan, Probed, ProbeUnreadable, Safeguard, Step


@dataclass
class RoleSteps:
    role: Role
    steps: list[Step]


@dataclass
class WalkState:
    """What the walk has learnt so far on this host."""

    probed: dict[int, Probed] = field(default_factory=dict)
    notified: list[str] = field(default_factory=list)
    armed: dict[str, Safeguard] = field(default_factory=dict)
    last_pending: str | None = None
    failed: bool = False


StepCallback = Callable[[Change], None]


class HostWalk:
    """Applies an ordered list of roles to one connected host."""

    def __init__(self, host: Host, connection: Connection, plan: Sequence[RoleSteps],
                 on_change: StepCallback, on_action: Callable[[str], None]) -> None:
        self.host, self.connection, self.plan = host, connection, plan
        self.on_change, self.on_action = on_change, on_action
        self.flat = [(index, step) for index, part in enumerate(plan) for step in part.steps]
        self.state = WalkState()

    def run(self) -> bool:
        """Walk every role; returns False when a step failed (the walk stops there)."""
        self._round_trip(None, 0)
        position = 0
        for part in self.plan:
            for _ in part.steps:
                if not self._step(position):
                    self._finish_role(part, position + 1)
                    return False
                position += 1
            self._finish_role(part, position)
            if self.state.failed:
                return False
        return True

    def _step(self, position: int) -> bool:
        _, step = self.flat[position]
        started = time.monotonic()
        plan = self._decide(step, self.state.probed.get(position))
        if isinstance(plan, Change):
            self._report(plan, started)
            return not plan.failed
        if not plan.changes:
            self._report(Change.ok(step.label, plan.reason), started)
            return True
        self.state.notified.extend(n for n in step.notify if n not in self.state.notified)
        if self.host.check:
            self.state.last_pending = step.label
            self._report(Change.made(step.label, "would change: " + plan.reason,
                                     self._redact(plan.diff)), started)
            return True
        return self._act(position, step, plan, started)

    def _decide(self, step: Step, probed: Probed | None) -> Plan | Change:
        if probed is None:
            return Change.failure(step.label, "probe produced no result (host output cut off)")
        try:
            return step.decide(probed)
        except ProbeUnreadable as error:
            if self.host.check and self.state.last_pending:
                return Change.made(step.label, f"would change after {self.state.last_pending}"
                                   f" ({error})")
            return Change.failure(step.label, str(error))

    def _act(self, position: int, step: Step, plan: Plan, started: float) -> bool:
        action = plan.action or ""
        if step.safeguard and step.safeguard.name not in self.state.armed:
            action = arm_action(step.safeguard) + action
            self.state.armed[step.safeguard.name] = step.safeguard
        self.on_action(step.label)
        result = self._round_trip(action, position + 1)
        if result.action_exit_code != 0:
            output = self._redact(result.action_output) or ""
            tail = "\n".join(output.rstrip().splitlines()[-10:])
            self._report(Change.failure(step.label, f"{plan.reason}: action failed (exit "
                                        f"{result.action_exit_code}): {tail}"), started)
            return False
        self._report(Change.made(step.label, plan.reason, self._redact(plan.diff)), started)
        return True

    def _finish_role(self, part: RoleSteps, next_position: int) -> None:
        handlers = [part.role.handlers[name] for name in self.state.notified
                    if name in part.role.handlers]
        self.state.notified = [n for n in self.state.notified if n not in part.role.handlers]
        for handler in handlers:
            self._run_handler(handler, next_position)
        for safeguard in list(self.state.armed.values()):
            self._confirm(safeguard, next_position)
        self.state.armed.clear()

    def _run_handler(self, handler: Handler, next_position: int) -> None:
        started = time.monotonic()
        label = f"handler {handler.name}"
        if self.host.check:
            self._report(Change.made(label, "would run (notified)"), started)
            return
        if self.state.failed:
            return
        self.on_action(label)
        result = self._round_trip(handler.action, next_position)
        if result.action_exit_code != 0:
            self.state.failed = True
            self._report(Change.failure(label, f"failed: {result.action_output.strip()[-800:]}"),
                         started)
        else:
            self._report(Change.made(label, "ran (notified)"), started)

    def _confirm(self, safeguard: Safeguard, next_position: int) -> None:
        """Prove the change with a brand-new SSH connection, then disarm; else revert now."""
        started = time.monotonic()
        label = f"safeguard {safeguard.name}"
        user = safeguard.login_user or self.host.config.user
        try:
            _prove_new_connection(replace(self.host.config, user=user))
        except ProvisionerError as error:
            self._round_trip(revert_now_action(safeguard), next_position)
            self.state.failed = True
            self._report(Change.failure(label, f"a new SSH connection as {user} failed after the"
                                        f" change ({error}); the previous state was restored"),
                         started)
            return
        self._round_trip(disarm_action(safeguard), next_position)
        self._report(Change.ok(label, f"new SSH connection as {user} works; revert disarmed"),
                     started)

    def _round_trip(self, action: str | None, first_probe: int) -> BatchResult:
        remaining = self.flat[first_probe:]
        script = build_batch([step.probe for _, step in remaining], action)
        output = self.connection.run_script(script.text).stdout
        result = parse_batch(script, output)
        for offset, probed in enumerate(result.probes):
            self.state.probed[first_probe + offset] = probed
        return result

    def _report(self, change: Change, started: float) -> None:
        if change.failed:
            self.state.failed = True
        self.on_change(replace(change, duration=time.monotonic() - started))

    def _redact(self, text: str | None) -> str | None:
        return redact(text, self.host.secrets) if text else text


def _prove_new_connection(config: HostConfig, patience: float = 10.0) -> None:
    """Log in afresh and run a command, retrying briefly: a reloaded sshd or a rebuilt firewall
    can take a moment to accept again, and a good change must not be reverted for that."""
    deadline = time.monotonic() + patience
    while True:
        try:
            fresh = open_connection(config)
            fresh.run_script("true", timeout=30)
            fresh.close()
            return
        except ProvisionerError:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)
