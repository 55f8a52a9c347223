"""Shell for arming, disarming and firing a Safeguard's revert timer on the host.

Arming writes a revert script and schedules it with ``systemd-run --on-active``, a transient timer
that survives the SSH connection dying. Steps record each file they are about to touch in the
safeguard's manifest (ops.files.safeguard_save); the revert restores those files, then runs the
safeguard's own undo (e.g. reload sshd, disable ufw).
"""

from __future__ import annotations

from provisioner.commands import quote
from provisioner.ops.files import SAFEGUARD_ROOT
from provisioner.step import Safeguard


def unit_name(safeguard: Safeguard) -> str:
    return f"provisioner-revert-{safeguard.name}"


def revert_script(safeguard: Safeguard) -> str:
    directory = f"{SAFEGUARD_ROOT}/{safeguard.name}"
    return (f"d={quote(directory)}\n"
            "if [ -f \"$d/manifest\" ]; then\n"
            "  while read -r kind path; do\n"
            "    case \"$kind\" in\n"
            "      saved) cp -p \"$d/files$path\" \"$path\" ;;\n"
            "      absent) rm -f \"$path\" ;;\n"
            "    esac\n"
            "  done < \"$d/manifest\"\n"
            "fi\n"
            f"{safeguard.undo}\n"
            "date -u +%Y-%m-%dT%H:%M:%SZ > \"$d/reverted\"\n")


def arm_action(safeguard: Safeguard) -> str:
    """Shell that resets the safeguard's state and schedules its revert."""
    directory = quote(f"{SAFEGUARD_ROOT}/{safeguard.name}")
    unit = unit_name(safeguard)
    return (f"systemctl stop {unit}.timer {unit}.service >/dev/null 2>&1; "
            f"systemctl reset-failed {unit}.timer {unit}.service >/dev/null 2>&1; "
            f"rm -rf {directory} && mkdir -p {directory} && : > {directory}/manifest && "
            f"printf '%s' {quote(revert_script(safeguard))} > {directory}/revert.sh && "
            f"systemd-run --quiet --unit={unit} --on-active={safeguard.timeout} "
            f"/bin/sh {directory}/revert.sh\n")


def disarm_action(safeguard: Safeguard) -> str:
    """Shell that cancels the revert once a new connection proved the change safe."""
    unit = unit_name(safeguard)
    directory = quote(f"{SAFEGUARD_ROOT}/{safeguard.name}")
    return (f"systemctl stop {unit}.timer >/dev/null 2>&1; "
            f"systemctl reset-failed {unit}.timer {unit}.service >/dev/null 2>&1; "
            f"rm -rf {directory}")


def revert_now_action(safeguard: Safeguard) -> str:
    """Shell that fires the revert immediately (the new connection failed) and cancels the timer."""
    unit = unit_name(safeguard)
    directory = quote(f"{SAFEGUARD_ROOT}/{safeguard.name}")
    return (f"systemctl stop {unit}.timer >/dev/null 2>&1; /bin/sh {directory}/revert.sh; "
            f"systemctl reset-failed {unit}.timer {unit}.service >/dev/null 2>&1; true")
