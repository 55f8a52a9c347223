"""Proving or undoing a safeguarded change once its role is done (the walk's last word on it).

A guarded change is proven by a brand-new SSH login with the inventory's own credentials and only
then disarmed; a failed proof, a failed role or an arming an interrupted run left behind is
reverted at once. Each function makes its round trips through the walk (``trip``) and returns the
Change to report, so the walk keeps one place that counts round trips and masks secrets.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence

from provisioner.change import Change
from provisioner.errors import ConnectError, ProvisionerError
from provisioner.inventory.hosts import HostConfig
from provisioner.run.batch import BatchResult
from provisioner.run.login_proof import prove_new_login
from provisioner.run.safeguards import (
    NO_LONGER_ARMED,
    Arming,
    disarm_action,
    revert_now_action,
    revert_pending_action,
)

#: Seconds a safeguard's disarm or revert may take on the host. They are quick; a host that
#: does not answer in this time has a dead link, and its own timer reverts.
SAFEGUARD_COMMAND_TIMEOUT = 60

#: One round trip of the walk: an action, then the probes from a position on (None: none).
Trip = Callable[[str, int | None], BatchResult]


def confirm(arming: Arming, config: HostConfig, trip: Trip, next_position: int | None
            ) -> tuple[Change, int]:
    """Prove the change with a new login, then disarm; else revert now. (Change, the round
    trips the proof's logins made.)"""
    label = f"safeguard {arming.safeguard.name}"
    try:
        logins = prove_new_login(config)
    except ProvisionerError as error:
        return revert_now(arming, trip, next_position, f"a new SSH login as {config.user} "
                          f"failed after the change ({error})"), 0
    result = trip(disarm_action(arming), next_position)
    if NO_LONGER_ARMED in result.action_output:
        return Change.failure(label, "the host's revert timer fired before the new login "
                              f"proved the change ({arming.safeguard.timeout} s): the previous "
                              "state was restored; give the safeguard more time"), logins
    return Change.ok(label, f"a new SSH login as {config.user} works; revert disarmed"), logins


def revert_now(arming: Arming, trip: Trip, next_position: int | None, failed: str) -> Change:
    """Fire the revert at once; if even that cannot reach the host, its timer will."""
    label = f"safeguard {arming.safeguard.name}"
    try:
        result = trip(revert_now_action(arming), next_position)
    except ConnectError as lost:
        return Change.failure(label, f"{failed}; reverting at once failed too ({lost}). "
                              f"{timer_note([arming])}")
    if NO_LONGER_ARMED in result.action_output:
        return Change.failure(label, f"{failed}; and its revert timer had already fired, so "
                              "the host may now hold changes made after that, unguarded: check "
                              "it, and give the safeguard more time")
    return Change.failure(label, f"{failed}; the previous state was restored")


def revert_pending(pending: Sequence[tuple[str, str]], ours: set[str], check: bool, trip: Trip
                   ) -> list[Change]:
    """Undo what interrupted runs left armed and unproven, before anything is decided.

    Their handlers may never have run (sshd still on its old config), so proving them now
    would prove nothing; left alone, their timers would undo them behind this run's back
    after it reported the host converged. Reverted, the walk sees the state they started
    from (probed again in the same round trip) and makes the changes again, properly.
    ``ours``: the safeguards this run's steps use."""
    if not check:
        trip(revert_pending_action([name for name, _ in pending]), 0)
    verb = "would revert" if check else "reverted"
    changes = []
    for name, arming_id in pending:
        again = ("this run makes its changes again" if name in ours else
                 "run the roles that made its changes to make them again")
        changes.append(Change.made(f"safeguard {name}", f"{verb} arming {arming_id}, which an "
                                   f"earlier run left unproven; {again}"))
    return changes


def timer_note(armings: Iterable[Arming]) -> str:
    times = ", ".join(f"{a.safeguard.name} at about "
                      f"{time.strftime('%H:%M:%S UTC', time.gmtime(a.fires_at))}"
                      for a in armings)
    return f"The host's own timer restores the unconfirmed change: safeguard {times}."
