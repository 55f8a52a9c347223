"""The walk over one host's steps: batched probes, actions with re-probes, handlers, safeguards.

Round trips: one for the probes of every step of every role (the facts script in front of them
when the steps were rendered from the facts the host had last time, see facts/remembered.py; a
separate one before them when a role reads facts nobody remembers), then one per action, with
the re-probe of the remaining steps (an action can make later probes stale). A converged host
therefore costs one round trip, whatever the number of steps.

Writes are batched: a step whose action changes only its own path (``Step.writes_only``: a file,
a directory) cannot make another step's probe stale, so its action is queued and the walk goes on
deciding from the same probe results; the queue travels in one round trip (actions in order,
stopping at the first failure) when a step that may depend on it comes next, when a queued path
comes up again, or at the end of the role. Ten changed files cost one round trip, not ten.

After a role's steps: its notified handlers (handlers.py: decided by the steps, recorded on the
host with the change, superseded ones skipped), then the proofs of its safeguards (proofs.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from provisioner.change import Change
from provisioner.content.roles import Role
from provisioner.errors import ConnectError
from provisioner.host import Host
from provisioner.ops.secret_store import parse_whole_store, whole_store_probe
from provisioner.run import batch, proofs
from provisioner.run import handlers as notifications
from provisioner.run.batch import ActionResult, BatchResult, build_batch, parse_batch, progress_text
from provisioner.run.safeguards import Arming, arm_action, parse_pending, pending_probe
from provisioner.secrets.redaction import redact, redact_diff
from provisioner.step import GroupedProbe, Plan, Probed, ProbeUnreadable, Refused, Step
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
    #: Handler name -> the (masked) labels of the steps that notified it, in order.
    notified: dict[str, list[str]] = field(default_factory=dict)
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
        self.facts_changed = False  # a Step.changes_facts step acted: read them at the end
        #: Safeguards an earlier run armed and never proved: (name, arming id).
        self._pending: list[tuple[str, str]] = []
        #: Handlers an earlier run recorded and never ran: role -> handler -> notifier.
        self._pending_handlers: dict[str, dict[str, str]] = {}
        #: What is masked in everything shown: the host's secrets, those steps add (a password
        #: quoted as an SQL literal, which the server's messages echo) and what they read.
        self.secrets = tuple(dict.fromkeys(
            (*host.secrets, *(secret for _, step in self.flat for secret in step.secrets))))

    def probe_all(self, lead: str | None = None) -> Probed | None:
        """The first round trip: every step's probe, after the read-only script ``lead``.

        Returns what ``lead`` printed (None without a lead, or when the output was cut off);
        run() then starts from these probes instead of probing again. The host is also asked
        for armings an earlier run left unproven (pending_probe, shell builtins only), whatever
        roles this run has: a run of other roles must not report a host whose sshd change is
        about to be undone by an old timer as converged; and for its secret store's values,
        masked from the first step on."""
        leads = [pending_probe(), notifications.pending_probe(), whole_store_probe()]
        result = self._round_trip(None, 0, leads + ([lead] if lead is not None else []))
        self._probed_all = True
        if len(result.probes) >= len(leads):
            self._pending = parse_pending(result.probes[0].output)
            self._pending_handlers = notifications.parse_pending(result.probes[1].output)
            self.secrets += tuple(parse_whole_store(result.probes[2].output))
        answers = result.probes[len(leads):]
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
            raise ConnectError(f"{error} {proofs.timer_note(self.state.armed.values())}") from None

    def _run_roles(self) -> bool:
        if not self._probed_all:
            self.probe_all()
        if self._pending:
            self._revert_pending()
        self._report_handlers_left_pending()
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
            notifying = self._notify(position, step, plan, started)
            if notifying is None:
                return False
            plan = notifying
            self.facts_changed |= step.changes_facts and not self.host.check
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

    def _notify(self, position: int, step: Step, plan: Plan, started: float) -> Plan | None:
        """Note the handlers the change notifies and record them on the host with the change
        itself (run/handlers.py); None when decide chose one the step does not declare."""
        names = step.notify if plan.notify is None else plan.notify
        undeclared = [name for name in names if name not in step.notify]
        if undeclared:
            self._report(Change.failure(step.label, f"decide chose to notify "
                                        f"{', '.join(undeclared)}, which the step does not "
                                        "declare in its notify (a bug in the role)"), started)
            return None
        label = self._redact(step.label)
        for name in names:
            self.state.notified.setdefault(name, []).append(label)
        if not names or self.host.check or plan.action is None:
            return plan
        role = self.plan[self.flat[position][0]].role.name
        return replace(plan, action=notifications.recorded_action(
            role, names, label, plan.action, undo_on_failure=plan.all_or_nothing))

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
            plan = step.decide(probed)
        except Refused as error:
            return Change.refusal(step.label, str(error))
        except ProbeUnreadable as error:
            if self.host.check and self.state.last_pending:
                # A step naming what it waits for is right; the last pending one is a guess.
                own = str(error).startswith("would change after")
                return Change.made(step.label, str(error) if own else
                                   f"would change after {self.state.last_pending} ({error})")
            return Change.failure(step.label, str(error))
        # Values a step read on the host (a host secret) are masked from here on, everywhere.
        self.secrets = tuple(dict.fromkeys((*self.secrets, *plan.secrets)))
        return plan

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
            output = self._redact(outcome.output if outcome else "")
            tail = "\n".join(output.rstrip().splitlines()[-10:])
            self._report(Change.failure(step.label, f"{plan.reason}: action failed ({code}): "
                                        f"{tail}"), started)
            return False
        self._report(Change.made(step.label, plan.reason, plan.diff), started)
        return True

    def _finish_role(self, part: RoleSteps, next_position: int) -> None:
        """Queued writes, then notified handlers, then safeguard proofs; only the last of those
        round trips carries the re-probe of the steps after the role."""
        handlers = self._handlers_to_run(part)
        safeguards = list(self.state.armed.values())
        trips = (len(handlers) if not self.host.check else 0) + len(safeguards)
        if self.state.queued and not self._flush(None if trips else next_position):
            handlers = []
        for index, handler in enumerate(handlers):
            last = index == len(handlers) - 1 and not safeguards
            self._run_handler(part.role.name, handler, next_position if last else None)
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

    def _handlers_to_run(self, part: RoleSteps) -> list[notifications.Notified]:
        """The role's notified handlers (this run's and those an earlier run left), those a
        notified one supersedes reported as skipped."""
        handlers = part.role.handlers
        notified = {name: labels for name, labels in self.state.notified.items()
                    if name in handlers}
        for name in notified:
            del self.state.notified[name]
        stale = []
        for name, notifier in self._pending_handlers.pop(part.role.name, {}).items():
            if name in handlers:
                notified.setdefault(name, []).append(
                    f"an earlier run's change ({notifier}) whose handler did not finish")
            else:
                stale.append(name)
        chosen, superseded = notifications.choose(handlers, notified)
        verb = "would not run" if self.host.check else "not run"
        for name, by in superseded.items():
            self._report(Change.ok(f"handler {name}", f"{verb}: {by} runs instead and "
                                   "supersedes it"), time.monotonic())
        if stale:  # handlers the role no longer has: nothing can run them; say so, remove
            if not self.host.check:
                self._round_trip(notifications.clear_action(part.role.name, stale), None)
            for change in notifications.stale_records(part.role.name, stale, self.host.check):
                self._report(change, time.monotonic())
        return chosen

    def _run_handler(self, role: str, notified: notifications.Notified,
                     next_position: int | None) -> None:
        started = time.monotonic()
        label = f"handler {notified.handler.name}"
        why = notifications.because(notified.because)
        if self.state.failed:  # its records stay: the next run runs it
            return
        if self.host.check:
            self._report(Change.made(label, f"would run ({why})"), started)
            return
        self.on_action(label)
        result = self._round_trip(notifications.handler_script(role, notified), next_position,
                                  progress_of=label)
        if result.action_exit_code != 0:
            self.state.failed = True
            self._report(Change.failure(label, f"failed ({why}): "
                                        f"{batch.last_lines(result.action_output)}"), started)
        else:
            ready = " and is ready" if notified.handler.ready is not None else ""
            self._report(Change.made(label, f"ran{ready} ({why})"), started)

    def _report_handlers_left_pending(self) -> None:
        """Say which recorded handlers this run will not run: their roles are not in it."""
        ours = {part.role.name for part in self.plan}
        for change in notifications.left_pending(self._pending_handlers, ours):
            self._report(change, time.monotonic())

    def _confirm(self, arming: Arming, next_position: int | None) -> None:
        started = time.monotonic()
        change, logins = proofs.confirm(arming, self.host.config, self._safeguard_trip,
                                        next_position)
        self.confirmation_round_trips += logins
        self._report(change, started)

    def _revert_now(self, arming: Arming, next_position: int | None, failed: str) -> Change:
        self.state.failed = True
        return proofs.revert_now(arming, self._safeguard_trip, next_position, failed)

    def _revert_pending(self) -> None:
        started = time.monotonic()
        pending, self._pending = self._pending, []
        ours = {step.safeguard.name for _, step in self.flat if step.safeguard is not None}
        for change in proofs.revert_pending(pending, ours, self.host.check,
                                            self._safeguard_trip):
            self._report(change, started)

    def _safeguard_trip(self, action: str, next_position: int | None) -> BatchResult:
        return self._round_trip(action, next_position, timeout=proofs.SAFEGUARD_COMMAND_TIMEOUT)

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
                    tell(label, self._redact(text))
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
        if self.secrets:
            change = replace(change, label=self._redact(change.label), reason=self._redact(
                change.reason), diff=change.diff and redact_diff(change.diff, self.secrets))
        self.on_change(replace(change, duration=time.monotonic() - started))

    def _redact(self, text: str) -> str:
        return redact(text, self.secrets) if text else text
