"""sshd: the whole sshd_config rendered by the role, strong moduli, host keys, no socket activation.

Every step that can change how sshd admits people runs under one Safeguard (shared with the
admin account's steps, admin.py), so the engine arms a revert timer before the first change and
proves a brand-new login with the inventory's own credentials after the ``ssh:reload`` handler
ran (controls.md §2.4.3).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from provisioner.commands import quote
from provisioner.errors import RoleError
from provisioner.facts import Facts
from provisioner.host import Host
from provisioner.ops.backups import backup_command, safeguard_save
from provisioner.ops.checks import ensure_command_result
from provisioner.ops.files import ensure_file
from provisioner.ops.systemd import reload_service
from provisioner.step import Handler, Plan, Probed, Safeguard, Step

SSH_UNIT = "ssh.service"
RELOAD = "ssh:reload"
MODULI = "/etc/ssh/moduli"
VALIDATE_SSHD = "/usr/sbin/sshd -t -f %s"


@dataclass(frozen=True)
class Crypto:
    ciphers: tuple[str, ...]
    macs: tuple[str, ...]
    kex: tuple[str, ...]


_CIPHERS = ("chacha20-poly1305@openssh.com", "aes256-gcm@openssh.com", "aes128-gcm@openssh.com",
            "aes256-ctr", "aes192-ctr", "aes128-ctr")
_MACS = ("hmac-sha2-512-etm@openssh.com", "hmac-sha2-256-etm@openssh.com",
         "umac-128-etm@openssh.com", "hmac-sha2-512", "hmac-sha2-256")
_KEX_BASE = ("curve25519-sha256@libssh.org", "diffie-hellman-group-exchange-sha256")

#: Key exchange by minimum OpenSSH version, newest first (controls §2.2, §2.4.6).
KEX_BY_VERSION: tuple[tuple[tuple[int, int], tuple[str, ...]], ...] = (
    ((9, 9), ("mlkem768x25519-sha256", "sntrup761x25519-sha512@openssh.com", *_KEX_BASE)),
    ((8, 5), ("sntrup761x25519-sha512@openssh.com", *_KEX_BASE)),
    ((8, 0), ("sntrup4591761x25519-sha512@tinyssh.org", *_KEX_BASE)),
    ((6, 6), _KEX_BASE),
)


def crypto_for(version: tuple[int, int] | None) -> Crypto:
    """dev-sec's lists for this OpenSSH version; mlkem768x25519 first from 9.9 on (§2.4.6).

    An unknown version (openssh-server not reported by dpkg) gets the 8.5 lists, which every
    supported release (Debian 12+, Ubuntu 22.04+) accepts.
    """
    effective = version or (8, 5)
    for minimum, kex in KEX_BY_VERSION:
        if effective >= minimum:
            return Crypto(_CIPHERS, _MACS, kex)
    raise RoleError(f"OpenSSH {effective[0]}.{effective[1]} is older than 6.6; the hardening role "
                    "has no safe crypto settings for it. Upgrade the host first.")


#: The inodes of sshd's listening sockets: the sockets among its open files that the kernel
#: lists as listening. A reload re-executes sshd, which binds new ones. Read from /proc, not
#: with ss: iproute2 is missing on minimal images, and each reload then waited its full 10 s.
_LISTENERS = ("{ for f in /proc/$(cat /run/sshd.pid 2>/dev/null)/fd/*; do readlink \"$f\"; "
              "done 2>/dev/null | sed -n 's/^socket:\\[\\([0-9]*\\)\\]$/s \\1/p'; "
              "awk '$4 == \"0A\" { print \"l\", $10 }' /proc/net/tcp /proc/net/tcp6 "
              "2>/dev/null; } | awk '$1 == \"s\" { mine[$2] = 1 } "
              "$1 == \"l\" && ($2 in mine) { print $2 }' | sort | tr '\\n' ' '")


def reload_handler() -> Handler:
    """``ssh:reload`` that returns only once sshd listens again.

    sshd re-executes itself on SIGHUP and ``systemctl reload`` returns before it has bound its
    port again, so the engine's confirming login would meet "connection refused" and revert a
    good change. Waiting (at most 10 s) for new listening sockets closes that race.
    """
    base = reload_service(SSH_UNIT, name=RELOAD)
    wait = (f"before=$({_LISTENERS})\n{base.action} || exit 1\ni=0\nwhile [ \"$i\" -lt 100 ]; do "
            f"now=$({_LISTENERS}); if [ -n \"$now\" ] && [ \"$now\" != \"$before\" ]; then "
            "break; fi; i=$((i + 1)); sleep 0.1; done")
    return Handler(base.name, wait)


def access_safeguard(variables: Mapping[str, Any]) -> Safeguard:
    """Revert every change to how the controller gets in (sshd, the admin's account, keys and
    sudo rights) unless a new login with the inventory's credentials works afterwards."""
    return Safeguard("ssh-access", undo=f"systemctl daemon-reload; systemctl reload-or-restart "
                     f"{SSH_UNIT}",
                     timeout=int(variables["hardening_ssh_safeguard_timeout"]))


def ssh_steps(host: Host) -> Iterator[Step]:
    """Host keys, moduli, sshd_config, then socket activation off (§2.1, §2.4)."""
    safeguard = access_safeguard(host.vars)
    yield _host_keys_present(host, safeguard)
    yield _strong_moduli(host, int(host.vars["hardening_ssh_moduli_min_bits"]), safeguard)
    content = host.render("etc/ssh/sshd_config.j2", **crypto_variables(host.vars, host.facts))
    yield ensure_file(host, "/etc/ssh/sshd_config", content, mode=0o600, validate=VALIDATE_SSHD,
                      notify=[RELOAD], safeguard=safeguard,
                      label="template /etc/ssh/sshd_config [controls §2.1, §2.2, §2.4.1]")
    yield from _socket_activation_off(host, safeguard)


def crypto_variables(variables: Mapping[str, Any], facts: Facts) -> dict[str, list[str]]:
    """The template's crypto variables: the inventory's lists, else the version's defaults.

    They are passed under the declared variable names because the engine checks every name a
    template reads against the role's defaults before any host is contacted.
    """
    crypto = crypto_for(facts.openssh_version)
    return {
        "hardening_ssh_ciphers": list(variables["hardening_ssh_ciphers"] or crypto.ciphers),
        "hardening_ssh_macs": list(variables["hardening_ssh_macs"] or crypto.macs),
        "hardening_ssh_kex_algorithms": list(variables["hardening_ssh_kex_algorithms"]
                                             or crypto.kex),
    }


def _host_keys_present(host: Host, safeguard: Safeguard) -> Step:
    """The three host keys sshd_config names exist (ssh-keygen -A only adds missing ones)."""
    probe = ("m=; for t in ed25519 ecdsa rsa; do [ -s /etc/ssh/ssh_host_${t}_key ] || "
             "m=\"$m $t\"; done; if [ -z \"$m\" ]; then echo 'all present'; "
             "else echo \"missing:$m\"; fi")
    return ensure_command_result(host, "ssh host keys ed25519, ecdsa, rsa [controls §2.1]", probe,
                                 wanted="all present", action="ssh-keygen -A",
                                 reason="generated", notify=[RELOAD], safeguard=safeguard)


def probe_moduli(min_bits: int) -> str:
    """``<weak> <kept>`` prime counts (the size column is bits - 1), or ``absent``."""
    return (f"if [ -f {MODULI} ]; then awk -v min={min_bits} '/^[0-9]/ && NF >= 7 "
            "{ if ($5 + 1 < min) weak++; else kept++ } END { printf \"%d %d\\n\", weak, kept }' "
            f"{MODULI}; else echo absent; fi")


def plan_moduli(output: str, min_bits: int, save: str = "") -> Plan:
    """Remove primes below min_bits, refusing to leave the file without any; pure."""
    if output.strip() == "absent":
        return Plan(f"no {MODULI} (sshd uses its built-in groups)")
    weak, kept = (int(part) for part in output.split()[:2])
    if not weak:
        return Plan(f"no primes below {min_bits} bits ({kept} kept)")
    if not kept:
        return Plan(f"every prime is below {min_bits} bits", action=(
            f"echo {quote(f'refusing to empty {MODULI}: lower hardening_ssh_moduli_min_bits')}"
            " >&2; exit 1"))
    return Plan(f"removed {weak} primes below {min_bits} bits ({kept} kept)",
                action=save + moduli_rewrite_action(min_bits))


def moduli_rewrite_action(min_bits: int) -> str:
    """Filter the file into a temp file beside it, keep a backup, rename over it."""
    return ("set -e\ntmp=$(mktemp /etc/ssh/.provisioner-XXXXXX)\ntrap 'rm -f \"$tmp\"' EXIT\n"
            f"awk -v min={min_bits} '!/^[0-9]/ || NF < 7 || $5 + 1 >= min' {MODULI} > \"$tmp\"\n"
            "chown root:root \"$tmp\" && chmod 0644 \"$tmp\"\n"
            f"{backup_command(MODULI)}\n"
            f"mv -f \"$tmp\" {MODULI}\ntrap - EXIT")


def _strong_moduli(host: Host, min_bits: int, safeguard: Safeguard) -> Step:
    save = safeguard_save(safeguard.name, MODULI)

    def decide(probed: Probed) -> Plan:
        return plan_moduli(probed.output, min_bits, save)

    return Step(f"ssh moduli of at least {min_bits} bits [controls §2.1]", probe_moduli(min_bits),
                decide, safeguard=safeguard)


def release(facts: Facts) -> tuple[int, int]:
    """``22.10`` -> (22, 10); Debian's ``12`` -> (12, 0)."""
    parts = [int(part) if part.isdigit() else 0 for part in facts.os_version.split(".")[:2]]
    padded = [*parts, 0, 0]
    return padded[0], padded[1]


def _socket_activation_off(host: Host, safeguard: Safeguard) -> Iterator[Step]:
    """ssh.socket masked where it exists (Debian >= 12, Ubuntu >= 22.10; §2.1, §2.4.2)."""
    facts = host.facts
    label = "masked ssh.socket [controls §2.1, §2.4.2]"
    if facts.os_id == "ubuntu" and release(facts) >= (22, 10):
        yield _ubuntu_socket_off(host, safeguard, label)
    elif facts.os_id == "debian" and facts.os_major >= 12:
        yield _debian_socket_off(host, safeguard, label)


#: Where ``systemctl mask`` puts ssh.socket's mask (saved as absent, so a revert unmasks).
SOCKET_MASK = "/etc/systemd/system/ssh.socket"


def _debian_socket_off(host: Host, safeguard: Safeguard, label: str) -> Step:
    """ssh.socket masked and ssh.service enabled and running, in one guarded action.

    Masking alone left a host that had been switched to socket activation with nothing to start
    sshd at the next boot (ssh.service disabled), serving only through the sshd the reload had
    started. The service starts after the socket let go of the port.
    """
    probe = ("s=$(systemctl show -p UnitFileState --value ssh.socket); "
             f"e=$(systemctl is-enabled {SSH_UNIT} 2>/dev/null); "
             f"a=$(systemctl is-active {SSH_UNIT} 2>/dev/null); "
             "if [ \"$s\" = masked ] && [ \"$e\" = enabled ] && [ \"$a\" = active ]; then "
             "echo 'masked, service enabled and running'; else "
             "echo \"socket ${s:-unknown}, ssh.service ${e:-unknown} and ${a:-unknown}\"; fi")
    action = (f"{safeguard_save(safeguard.name, SOCKET_MASK)}systemctl mask --now ssh.socket && "
              f"systemctl enable --quiet {SSH_UNIT} && "
              f"{{ systemctl is-active --quiet {SSH_UNIT} || systemctl restart {SSH_UNIT}; }}")
    return ensure_command_result(host, label, probe, wanted="masked, service enabled and running",
                                 action=action, reason="masked, ssh.service enabled and running",
                                 safeguard=safeguard)


#: Ubuntu's socket-activation wiring, removed as dev-sec does (issue #763). Untested here.
UBUNTU_SOCKET_FILES = ("/etc/systemd/system/ssh.service.d/00-socket.conf",
                       "/etc/systemd/system/ssh.service.requires/ssh.socket",
                       "/etc/systemd/system/sockets.target.wants/ssh.socket")


def _ubuntu_socket_off(host: Host, safeguard: Safeguard, label: str) -> Step:
    """Ubuntu >= 22.10 starts sshd from ssh.socket: unwire it, mask it, run ssh.service itself.

    The restart is part of the action (not a handler) because the socket's sshd must be replaced
    by a standalone one before anything else touches sshd. Untested: no Ubuntu sandbox.
    """
    files = " ".join(quote(path) for path in UBUNTU_SOCKET_FILES)
    probe = (f"state=$(systemctl show -p UnitFileState --value ssh.socket); left=; for f in {files}"
             "; do [ -e \"$f\" ] && left=\"$left $f\"; done; "
             "if [ \"$state\" = masked ] && [ -z \"$left\" ]; then echo masked; "
             "else echo \"$state$left\"; fi")
    saves = "".join(safeguard_save(safeguard.name, path) for path in UBUNTU_SOCKET_FILES)
    action = (f"{saves}rm -f {files} && systemctl daemon-reload && systemctl enable {SSH_UNIT} && "
              f"systemctl mask --now ssh.socket && systemctl restart {SSH_UNIT}")
    return ensure_command_result(host, label, probe, wanted="masked", action=action,
                                 reason="masked, ssh.service standalone", safeguard=safeguard)
