"""The walk over one host's steps: batched probes, actions with re-probes, handlers, safeguards.

Round trips: one for the probes of every step of every role (the facts script in front of them
when the steps were rendered from the facts the host had last time, see facts_cache.py; a
separate one before them when a role reads facts nobody remembers), then one per action (the
action and the re-probe of the remaining steps travel together, because an action can make later
probes stale). A converged host therefore costs one round trip, whatever the number of steps.

Writes are batched: a step whose action changes only its own path (``Step.writes_only``: a file,
a directory) cannot make another step's probe stale, so its action is queued and the walk goes on
deciding from the same probe results; the queue travels in one round trip (actions in order,
stopping at the first failure) when a step that may depend on it comes next, when a queued path
comes up again, or at the end of the role. Ten changed files cost one round trip, not ten.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace

from provisioner.change import Change
from provisioner.content.roles import Role
from provisioner.errors import ConnectError, ProvisionerError
from provisioner.host import Host
from provisioner.run.batch import ActionResult, BatchResult, build_batch, parse_batch, progress_text
from provisioner.run.login_proof import prove_new_login
from provisioner.run.safeguards import (
    NO_LONGER_ARMED,
    Arming,
    arm_action,
    disarm_action,
    parse_pending,
    pending_probe,
    revert_now_action,
    revert_pending_action,
)
from provisioner.secrets.redaction import redact, redact_diff
from provisioner.step import (
    GroupedProbe,
    Handler,
    Plan,
    Probed,
    ProbeUnreadable,
    Step,
)
from provisioner.transport.remote import RemoteShell


@dataclass
class RoleSteps:
    role: Role
    steps: list[Step]


@dataclass(frozen=True)
class Decided:
    """A step decided from current probes whose report waits for queued writes before it."""

    step: Step
    plan: Plan
    started: float


@dataclass
class WalkState:
    """What the walk has learnt so far on this host."""

    probed: dict[int, Probed] = field(default_factory=dict)
    queued: list[Decided] = field(default_factory=list)
    notified: list[str] = field(default_factory=list)
    armed: dict[str, Arming] = field(default_factory=dict)
    last_pending: str | None = None
    failed: bool = False


StepCallback = Callable[[Change], None]
#: Hears (step label, text) when a running action reports progress (provisioner_progress).
ProgressCallback = Callable[[str, str], None]


class HostWalk:
    """Applies an ordered list of roles to one connected host."""

    def __init__(self, host: Host, connection: RemoteShell, plan: Sequence[RoleSteps],
                 on_change: StepCallback, on_action: Callable[[str], None],
                 on_progress: ProgressCallback | None = None) -> None:
        self.host, self.connection, self.plan = host, connection, plan
        self.on_change, self.on_action = on_change, on_action
        self.on_progress = on_progress
        self.flat = [(index, step) for index, part in enumerate(plan) for step in part.steps]
        self.state = WalkState()
        #: Round trips made over the fresh connections that prove a safeguarded change.
        self.confirmation_round_trips = 0
        self._probed_all = False
        #: Safeguards an earlier run armed and never proved: (name, arming id).
        self._pending: list[tuple[str, str]] = []

    def probe_all(self, lead: str | None = None) -> Probed | None:
        """The first round trip: every step's probe, after the read-only script ``lead``.

        Returns what ``lead`` printed (None without a lead, or when the output was cut off);
        run() then starts from these probes instead of probing again. The host is also asked
        for armings an earlier run left unproven (pending_probe, shell builtins only), whatever
        roles this run has: a run of other roles must not report a host whose sshd change is
        about to be undone by an old timer as converged."""
        leads = [pending_probe()] + ([lead] if lead is not None else [])
        result = self._round_trip(None, 0, leads)
        self._probed_all = True
        if result.probes:
            self._pending = parse_pending(result.probes[0].output)
        answers = result.probes[1:]
        return answers[0] if lead is not None and answers else None

    def run(self) -> bool:
        """Walk every role; returns False when a step failed (the walk stops there).

        A login lost while a safeguard is armed fails the host with a message saying when the
        host's own timer restores the unconfirmed change."""
        try:
            return self._run_roles()
        except ConnectError as error:
            if not self.state.armed:
                raise
            raise ConnectError(f"{error} {_timer_note(self.state.armed.values())}") from None

    def _run_roles(self) -> bool:
        if not self._probed_all:
            self.probe_all()
        if self._pending:
            self._revert_pending()
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
        if self.state.queued and not self._may_decide_before_queued_writes(step) and \
                not self._flush(position):
            return False
        started = time.monotonic()
        plan = self._decide(step, self.state.probed.get(position))
        if isinstance(plan, Change):
            if plan.failed and not self._flush(position + 1):
                return False
            self._report(plan, started)
            return not plan.failed
        if plan.changes:
            self.state.notified.extend(n for n in step.notify if n not in self.state.notified)
        if self.state.queued or (plan.changes and self._writes_only(step) and not self.host.check):
            self.state.queued.append(Decided(step, plan, started))
            return True
        if not plan.changes:
            self._report(Change.ok(step.label, plan.reason), started)
            return True
        if self.host.check:
            self.state.last_pending = step.label
            self._report(Change.made(step.label, "would change: " + plan.reason,
                                     plan.diff), started)
            return True
        return self._act(position, step, plan, started)

    @staticmethod
    def _writes_only(step: Step) -> str | None:
        """The path a step's action alone changes; a safeguarded step never joins a batch."""
        return step.writes_only if step.safeguard is None else None

    def _may_decide_before_queued_writes(self, step: Step) -> bool:
        path = self._writes_only(step)
        return path is not None and path not in {self._writes_only(d.step)
                                                 for d in self.state.queued}

    def _flush(self, next_position: int | None) -> bool:
        """Send the queued writes in one round trip, then report the queued steps in order.

        The queue only ever starts with a write, so there is always at least one to send."""
        queued, self.state.queued = self.state.queued, []
        acting = [decided for decided in queued if decided.plan.changes]
        for decided in acting:
            self.on_action(decided.step.label)
        result = self._round_trip([d.plan.action or "" for d in acting], next_position)
        outcomes = iter(result.actions)
        for decided in queued:
            if not decided.plan.changes:
                self._report(Change.ok(decided.step.label, decided.plan.reason), decided.started)
            elif not self._report_action(decided.step, decided.plan, next(outcomes, None),
                                         decided.started):
                return False
        return True

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
            arming = Arming.new(step.safeguard, time.time())
            action = arm_action(arming) + action
            self.state.armed[step.safeguard.name] = arming
        self.on_action(step.label)
        result = self._round_trip(action, position + 1, progress_of=step.label)
        return self._report_action(step, plan, result.actions[0] if result.actions else None,
                                   started)

    def _report_action(self, step: Step, plan: Plan, outcome: ActionResult | None,
                       started: float) -> bool:
        if outcome is None or outcome.exit_code != 0:
            code = "no result: host output cut off" if outcome is None else \
                f"exit {outcome.exit_code}"
            output = self._redact(outcome.output if outcome else "") or ""
            tail = "\n".join(output.rstrip().splitlines()[-10:])
            self._report(Change.failure(step.label, f"{plan.reason}: action failed ({code}): "
                                        f"{tail}"), started)
            return False
        self._report(Change.made(step.label, plan.reason, plan.diff), started)
        return True

    def _finish_role(self, part: RoleSteps, next_position: int) -> None:
        """Queued writes, then notified handlers, then safeguard proofs; only the last of those
        round trips carries the re-probe of the steps after the role."""
        handlers = [part.role.handlers[name] for name in self.state.notified
                    if name in part.role.handlers]
        self.state.notified = [n for n in self.state.notified if n not in part.role.handlers]
        safeguards = list(self.state.armed.values())
        trips = (len(handlers) if not self.host.check else 0) + len(safeguards)
        if self.state.queued and not self._flush(None if trips else next_position):
            handlers = []
        for index, handler in enumerate(handlers):
            last = index == len(handlers) - 1 and not safeguards
            self._run_handler(handler, next_position if last else None)
        for index, arming in enumerate(safeguards):
            position = next_position if index == len(safeguards) - 1 else None
            if self.state.failed:
                # Its handlers did not run, so a proof would test the old state; a change left
                # in place unproven would go live at the next restart, and no later run would
                # notice (its file is as desired). Undo it; the next run makes it again.
                self._report(self._revert_now(arming, position, "a step of the role failed "
                                              "before the change was proven"), time.monotonic())
            else:
                self._confirm(arming, position)
        self.state.armed.clear()

    def _run_handler(self, handler: Handler, next_position: int | None) -> None:
        started = time.monotonic()
        label = f"handler {handler.name}"
        if self.host.check:
            self._report(Change.made(label, "would run (notified)"), started)
            return
        if self.state.failed:
            return
        self.on_action(label)
        result = self._round_trip(handler.action, next_position, progress_of=label)
        if result.action_exit_code != 0:
            self.state.failed = True
            self._report(Change.failure(label, f"failed: {result.action_output.strip()[-800:]}"),
                         started)
        else:
            self._report(Change.made(label, "ran (notified)"), started)

    def _confirm(self, arming: Arming, next_position: int | None) -> None:
        """Prove the change with a brand-new SSH login, then disarm; else revert now."""
        started = time.monotonic()
        label = f"safeguard {arming.safeguard.name}"
        user = self.host.config.user
        try:
            self.confirmation_round_trips += prove_new_login(self.host.config)
        except ProvisionerError as error:
            self._report(self._revert_now(arming, next_position, f"a new SSH login as {user} "
                                          f"failed after the change ({error})"), started)
            return
        result = self._round_trip(disarm_action(arming), next_position,
                                  timeout=SAFEGUARD_COMMAND_TIMEOUT)
        if NO_LONGER_ARMED in result.action_output:
            self._report(Change.failure(label, "the host's revert timer fired before the new "
                                        f"login proved the change ({arming.safeguard.timeout} s):"
                                        " the previous state was restored; give the safeguard "
                                        "more time"), started)
            return
        self._report(Change.ok(label, f"a new SSH login as {user} works; revert disarmed"),
                     started)

    def _revert_now(self, arming: Arming, next_position: int | None, failed: str) -> Change:
        """Fire the revert at once; if even that cannot reach the host, its timer will."""
        label = f"safeguard {arming.safeguard.name}"
        self.state.failed = True
        try:
            result = self._round_trip(revert_now_action(arming), next_position,
                                      timeout=SAFEGUARD_COMMAND_TIMEOUT)
        except ConnectError as lost:
            return Change.failure(label, f"{failed}; reverting at once failed too ({lost}). "
                                  f"{_timer_note([arming])}")
        if NO_LONGER_ARMED in result.action_output:
            return Change.failure(label, f"{failed}; and its revert timer had already fired, "
                                  "so the host may now hold changes made after that, unguarded: "
                                  "check it, and give the safeguard more time")
        return Change.failure(label, f"{failed}; the previous state was restored")

    def _revert_pending(self) -> None:
        """Undo what interrupted runs left armed and unproven, before anything is decided.

        Their handlers may never have run (sshd still on its old config), so proving them now
        would prove nothing; left alone, their timers would undo them behind this run's back
        after it reported the host converged. Reverted, the walk sees the state they started
        from (probed again in the same round trip) and makes the changes again, properly."""
        started = time.monotonic()
        pending, self._pending = self._pending, []
        if not self.host.check:
            self._round_trip(revert_pending_action([name for name, _ in pending]), 0,
                             timeout=SAFEGUARD_COMMAND_TIMEOUT)
        verb = "would revert" if self.host.check else "reverted"
        ours = {step.safeguard.name for _, step in self.flat if step.safeguard is not None}
        for name, arming_id in pending:
            again = ("this run makes its changes again" if name in ours else
                     "run the roles that made its changes to make them again")
            self._report(Change.made(f"safeguard {name}", f"{verb} arming {arming_id}, which an "
                                     f"earlier run left unproven; {again}"), started)

    def _round_trip(self, action: str | list[str] | None, first_probe: int | None,
                    leads: Sequence[str] = (), timeout: float | None = None,
                    progress_of: str | None = None) -> BatchResult:
        """One script: the action(s), then the probes of the steps from first_probe on (none when
        first_probe is None, because a later round trip of the same finish re-probes), after the
        read-only ``leads``. What the action reports while it runs is shown as the progress of
        the step labelled ``progress_of``."""
        remaining = self.flat[first_probe:] if first_probe is not None else []
        leading: list[str | GroupedProbe] = list(leads)
        script = build_batch(leading + [step.wire_probe for _, step in remaining], action)
        heard = None
        if progress_of is not None and self.on_progress is not None:
            tell, label = self.on_progress, progress_of

            def heard(line: str) -> None:
                text = progress_text(script, line)
                if text is not None:
                    tell(label, self._redact(text) or "")
        output = self.connection.run_script(script.text, timeout=timeout,
                                            stderr_lines=heard).stdout
        result = parse_batch(script, output)
        for offset, probed in enumerate(result.probes[len(leading):]):
            self.state.probed[(first_probe or 0) + offset] = probed
        return result

    def _report(self, change: Change, started: float) -> None:
        """Hand on a Change with every secret value masked, wherever a role put it."""
        if change.failed:
            self.state.failed = True
        if self.host.secrets:
            change = replace(change, label=self._redact(change.label) or "",
                             reason=self._redact(change.reason) or "",
                             diff=change.diff and redact_diff(change.diff, self.host.secrets))
        self.on_change(replace(change, duration=time.monotonic() - started))

    def _redact(self, text: str | None) -> str | None:
        return redact(text, self.host.secrets) if text else text


#: Seconds a safeguard's disarm or revert may take on the host. They are quick; a host that
#: does not answer in this time has a dead link, and its own timer reverts.
SAFEGUARD_COMMAND_TIMEOUT = 60


def _timer_note(armings: Iterable[Arming]) -> str:
    times = ", ".join(f"{a.safeguard.name} at about "
                      f"{time.strftime('%H:%M:%S UTC', time.gmtime(a.fires_at))}"
                      for a in armings)
    return f"The host's own timer restores the unconfirmed change: safeguard {times}."
