"""Step: one idempotent unit of work, declared as probe -> decide -> act so the engine can batch.

A step never talks to the host itself. It declares a read-only shell snippet (the probe), a pure
function that turns the probe's output into a Plan (the decision), and the Plan carries the shell
action that makes the change. The engine sends the probes of many steps in one round trip, calls
``decide`` on the controller, and sends an action only when a Plan asks for one. That split is
what lets a no-op run cost one round trip, and what makes check mode safe by construction: check
mode simply never sends an action.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from provisioner.secrets.values import Secret


@dataclass(frozen=True)
class Probed:
    """What a probe printed on stdout and its exit code."""

    output: str
    exit_code: int = 0


@dataclass(frozen=True)
class Plan:
    """The decision for one step: why, the shell action (None = nothing to do), and a diff."""

    reason: str
    action: str | None = None
    diff: str | None = None
    #: The handlers this change notifies, chosen by decide from what changed (PostgreSQL:
    #: restart only when a setting needs one, else reload); each must be one the step declares
    #: in Step.notify. None: all of those.
    notify: tuple[str, ...] | None = None
    #: The action makes the whole change or none of it (a validated write then a rename, a
    #: config set): when it fails nothing changed, so no handler is owed. Otherwise a failed
    #: action may have changed something first, and the handlers it notifies stay owed.
    all_or_nothing: bool = False
    #: Values decide read on the host (a host secret in the probe's answer): the engine masks
    #: them in everything it shows from then on, as it does the inventory's secrets.
    secrets: tuple[Secret, ...] = ()

    @property
    def changes(self) -> bool:
        return self.action is not None


class Refused(Exception):
    """decide() found a state the role must not change or go past (a mirror it cannot name, a
    setting that would break the host): the step is refused and the host's run stops there.

    Unlike an action that exits 1, a refusal is decided on the controller, so check mode reports
    it as what it is instead of "would change".
    """


class ProbeUnreadable(Exception):
    """decide() could not read the host's state, e.g. a tool an earlier step installs is absent.

    In check mode after an earlier pending change this is expected and reported as "would change
    after ..."; otherwise the step fails with this message.
    """


#: Seconds a safeguard's revert timer must at least allow: the guarded change, its handlers and
#: the proof by a new login (up to about 95 s when the host holds new connections back,
#: run/login_proof.py) all happen before it may fire.
MINIMUM_SAFEGUARD_TIMEOUT = 120
#: And at most: a host that lost its controller must get its old state back within the hour.
MAXIMUM_SAFEGUARD_TIMEOUT = 3600


def check_safeguard_timeout(variable: str, value: object) -> None:
    """RoleError unless ``value`` is a whole number of seconds a safeguard may wait."""
    from provisioner.errors import RoleError

    if isinstance(value, bool) or not isinstance(value, int) or \
            not MINIMUM_SAFEGUARD_TIMEOUT <= value <= MAXIMUM_SAFEGUARD_TIMEOUT:
        raise RoleError(f"{variable} must be a whole number of seconds from "
                        f"{MINIMUM_SAFEGUARD_TIMEOUT} to {MAXIMUM_SAFEGUARD_TIMEOUT}, got "
                        f"{value!r}: the change, its reload and the proof by a new login must all "
                        "happen before the revert fires, and a host that lost its controller "
                        "must get its old state back soon (0 does not switch a safeguard off; "
                        "nothing does).")


@dataclass(frozen=True)
class Safeguard:
    """A change that could cut the operator off (sshd, firewall, the login user's account) and
    must prove itself.

    Before the first action under it, the engine arms a revert on the host: a timer that fires
    after ``timeout`` seconds unless disarmed, restoring every file the steps recorded and then
    running ``undo``. After the role's handlers ran, the engine logs in anew with the inventory's
    own credentials and runs a command as root; if that works it disarms the timer, otherwise it
    reverts at once. A dead provisioning connection leaves the timer to do it.
    """

    name: str
    undo: str
    timeout: int = 120


@dataclass(frozen=True)
class ProbeGroup:
    """Probes of one kind that a single command answers for many items at once.

    Thirty file probes cost sixty process starts on the host; as a group they cost three. ``build``
    turns the items (paths, say) into one read-only snippet; ``split`` turns that snippet's output
    back into, for each item, text in the format of the item's own probe, so a step's decide()
    reads it the same way either way.
    """

    name: str
    build: Callable[[Sequence[str]], str]
    split: Callable[[str, Sequence[str]], Mapping[str, str]]


@dataclass(frozen=True)
class GroupedProbe:
    """A step's probe expressed as one item of a ProbeGroup."""

    group: ProbeGroup
    item: str


@dataclass(frozen=True)
class Step:
    """One idempotent step; see the module docstring for the contract."""

    label: str
    probe: str
    decide: Callable[[Probed], Plan]
    notify: tuple[str, ...] = ()
    safeguard: Safeguard | None = None
    #: Secret values beyond the host's variables that this step's output may show (a password
    #: quoted as an SQL literal, a value generated on the host): masked wherever the walk
    #: reports anything.
    secrets: tuple[Secret, ...] = field(default=())
    #: The one path this step's action changes, set only when the action changes nothing else
    #: and the probe reads only that path (a file, a directory). The engine may then decide the
    #: steps after it from the same probe results and send several such writes in one round trip.
    writes_only: str | None = None
    #: The same probe as ``probe``, as an item the engine may answer together with others.
    grouped: GroupedProbe | None = None
    #: The action may change what the facts script reports (apt sources, installed packages):
    #: a run that acts on such a step reads the facts again at its end, so the next run is
    #: rendered from the host as it is now and a converged host stays one round trip.
    changes_facts: bool = False

    @property
    def wire_probe(self) -> str | GroupedProbe:
        """What the engine sends for this step: the group item when there is one."""
        return self.grouped or self.probe


@dataclass(frozen=True)
class Handler:
    """A named action run at most once after a role's steps, only if some step notified it.

    A notified handler is recorded on the host in the same round trip as the change that
    notified it and forgotten only once it ran, so a run that fails or dies in between leaves
    it to the next run, whose files no longer change (run/handlers.py).
    """

    name: str
    action: str
    #: Handlers of the same role this one makes unnecessary when both are notified: a restart
    #: of a service supersedes its reload.
    supersedes: tuple[str, ...] = ()
    #: A read-only shell check that succeeds once the service serves again; the handler waits
    #: for it after its action, up to ``ready_timeout`` seconds, and fails if it never does.
    ready: str | None = None
    ready_timeout: int = 60
