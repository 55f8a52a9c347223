"""Shell for arming, disarming and firing a Safeguard's revert timer on the host.

Arming writes a revert script and schedules it with ``systemd-run --on-active``, a transient timer
that survives the SSH connection dying; its accuracy is one second (systemd's default of a
minute made a 120 s safeguard fire up to a minute late). Steps record each file they are about
to touch in the safeguard's manifest (ops.backups.safeguard_save); the revert restores those
files, then runs the safeguard's own undo (e.g. reload sshd, disable ufw).

While a safeguard is armed, the controller's address (as the host sees this login) is exempt
from the host's fail2ban jails, at runtime only: the proof of a bad change is a refused login,
and refused logins from runs retried on a bad day would add up to a ban that locks the operator
out for the ban time. The proof itself makes one refused login at most (login_proof.py). The
exemption ends with the arming, whether disarmed, reverted at once or reverted by the timer,
and only addresses the arming added are removed again.

Every arming has its own id, written on the host beside the manifest, and the disarm and
revert-now commands name it: they act only while that same arming is the one in place. A
command that reaches the host late (a login that went dead and came back) or a run that
overlapped another can therefore never undo, or cancel the timer of, a different change.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from provisioner.commands import quote
from provisioner.ops.backups import SAFEGUARD_ROOT
from provisioner.step import Safeguard, check_safeguard_timeout


@dataclass(frozen=True)
class Arming:
    """One arming of a safeguard on a host: which, under what id, and when it fires."""

    safeguard: Safeguard
    id: str
    #: time.time() at which the host's timer reverts unless disarmed first.
    fires_at: float

    @classmethod
    def new(cls, safeguard: Safeguard, now: float) -> Arming:
        """A fresh arming; a timeout too short to outlast the change itself is refused (0 fired
        the revert before the change was made, leaving the change unguarded)."""
        check_safeguard_timeout(f"safeguard {safeguard.name}'s timeout", safeguard.timeout)
        return cls(safeguard, secrets.token_hex(8), now + safeguard.timeout)


#: Why a guarded change was not even tried: without its revert armed it must not happen.
NOT_ARMED = "could not arm the revert timer (systemd-run failed); the change was not made"
#: What disarm and revert-now print when their arming is no longer the one on the host.
NO_LONGER_ARMED = "is no longer in place; nothing done"


#: Finds the controller's address: SSH_CLIENT of the nearest ancestor that has it (sudo drops
#: it from the root shell's own environment).
_CONTROLLER = ("c=; p=$$; while [ \"${p:-1}\" -gt 1 ]; do "
               "c=$(tr '\\0' '\\n' < /proc/$p/environ 2>/dev/null | "
               "sed -n 's/^SSH_CLIENT=\\([^ ]*\\) .*/\\1/p'); [ -n \"$c\" ] && break; "
               "p=$(sed 's/.*) //' /proc/$p/stat 2>/dev/null | cut -d' ' -f2); done")


def exempt_controller(directory: str) -> str:
    """Shell adding the controller to every running fail2ban jail's ignore list, recording in
    ``directory/exempt`` each jail it was added to (never one that already ignored it)."""
    return (f"{_CONTROLLER}; if [ -n \"$c\" ] && command -v fail2ban-client >/dev/null 2>&1 && "
            "fail2ban-client ping >/dev/null 2>&1; then "
            "for j in $(fail2ban-client status | sed -n 's/.*Jail list:[[:space:]]*//p' | "
            "tr ',' ' '); do fail2ban-client get \"$j\" ignoreip | grep -qwF \"$c\" || "
            "{ fail2ban-client set \"$j\" addignoreip \"$c\" >/dev/null && "
            f"echo \"$j $c\" >> {directory}/exempt; }}; done; fi")


def end_exemption(directory: str) -> str:
    """Shell removing what exempt_controller added."""
    return (f"if [ -f {directory}/exempt ]; then while read -r j c; do "
            "fail2ban-client set \"$j\" delignoreip \"$c\" >/dev/null 2>&1; "
            f"done < {directory}/exempt; rm -f {directory}/exempt; fi")


def unit_name(name: str) -> str:
    return f"provisioner-revert-{name}"


def _directory(name: str) -> str:
    return f"{SAFEGUARD_ROOT}/{name}"


def _fire_revert(name: str) -> str:
    """Shell running a safeguard's revert now, its timer stopped first and cleared after."""
    unit = unit_name(name)
    return (f"systemctl stop {unit}.timer >/dev/null 2>&1; "
            f"/bin/sh {quote(_directory(name))}/revert.sh; "
            f"systemctl reset-failed {unit}.timer {unit}.service >/dev/null 2>&1")


#: How revert.sh names its own directory (it sets d= first).
QUOTED_DIRECTORY = '"$d"'


def revert_script(safeguard: Safeguard) -> str:
    return (f"d={quote(_directory(safeguard.name))}\n"
            "if [ -f \"$d/manifest\" ]; then\n"
            "  while read -r kind path; do\n"
            "    case \"$kind\" in\n"
            "      saved) cp -p \"$d/files$path\" \"$path\" ;;\n"
            "      absent) rm -f \"$path\" ;;\n"
            "    esac\n"
            "  done < \"$d/manifest\"\n"
            "fi\n"
            f"{safeguard.undo}\n"
            f"{end_exemption(QUOTED_DIRECTORY)}\n"
            "date -u +%Y-%m-%dT%H:%M:%SZ > \"$d/reverted\"\n"
            "rm -f \"$d/armed\"\n")


def arm_action(arming: Arming) -> str:
    """Shell that resets the safeguard's state, records this arming's id, schedules its revert."""
    safeguard = arming.safeguard
    directory = quote(_directory(safeguard.name))
    unit = unit_name(safeguard.name)
    return (f"systemctl stop {unit}.timer {unit}.service >/dev/null 2>&1; "
            f"systemctl reset-failed {unit}.timer {unit}.service >/dev/null 2>&1; "
            f"{end_exemption(directory)}; "
            f"rm -rf {directory} && mkdir -p -m 0700 {directory} && : > {directory}/manifest && "
            f"printf '%s' {quote(revert_script(safeguard))} > {directory}/revert.sh && "
            f"systemd-run --quiet --unit={unit} --on-active={safeguard.timeout} "
            f"--timer-property=AccuracySec=1s /bin/sh {directory}/revert.sh && "
            f"echo {quote(arming.id)} > {directory}/armed || "
            f"{{ echo {quote(NOT_ARMED)} >&2; exit 1; }}\n"
            f"{exempt_controller(directory)}\n")


def _while_armed(arming: Arming, then: str) -> str:
    """``then`` only if this arming is still the one in place; else say so and do nothing."""
    armed = quote(f"{_directory(arming.safeguard.name)}/armed")
    skipped = quote(f"safeguard {arming.safeguard.name}: arming {arming.id} {NO_LONGER_ARMED}")
    return (f"if [ \"$(cat {armed} 2>/dev/null)\" = {quote(arming.id)} ]; then {then}; "
            f"else echo {skipped}; fi")


def pending_probe() -> str:
    """Read-only: ``<name> <arming id>`` for each safeguard armed on the host and not yet
    disarmed or reverted (an interrupted run's)."""
    return (f"for f in {SAFEGUARD_ROOT}/*/armed; do [ -f \"$f\" ] || continue; "
            "d=${f%/armed}; printf '%s %s\\n' \"${d##*/}\" \"$(cat \"$f\")\"; done; true")


def parse_pending(output: str) -> list[tuple[str, str]]:
    return [(fields[0], fields[1]) for fields in (line.split() for line in output.splitlines())
            if len(fields) == 2]


def revert_pending_action(names: list[str]) -> str:
    """Shell firing, now, the revert of each named safeguard that is still armed."""
    return "".join(f"if [ -f {quote(_directory(name))}/armed ]; then {_fire_revert(name)}; fi; "
                   for name in names) + "true"


def disarm_action(arming: Arming) -> str:
    """Shell that cancels this arming's revert once a new login proved the change safe."""
    unit = unit_name(arming.safeguard.name)
    directory = quote(_directory(arming.safeguard.name))
    return _while_armed(arming, f"systemctl stop {unit}.timer >/dev/null 2>&1; "
                        f"systemctl reset-failed {unit}.timer {unit}.service >/dev/null 2>&1; "
                        f"{end_exemption(directory)}; rm -rf {directory}")


def revert_now_action(arming: Arming) -> str:
    """Shell that fires this arming's revert at once (the new login failed), timer cancelled."""
    return _while_armed(arming, f"{_fire_revert(arming.safeguard.name)}; true")
