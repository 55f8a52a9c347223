"""Users with their authorized keys, groups, and sudoers drop-ins that visudo accepts first.

Each builder takes an optional Safeguard: a user's shell, groups, keys and sudo rights decide
whether the controller can still log in, so a role changing those for the login user guards
them like an sshd change (the account databases are saved for the revert).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from provisioner.commands import join, quote
from provisioner.host import Host
from provisioner.ops.backups import safeguard_save
from provisioner.ops.files import ensure_directory, ensure_file
from provisioner.step import Plan, Probed, Safeguard, Step

#: What useradd, usermod and gpasswd change; saved before a guarded change to an account.
ACCOUNT_FILES = ("/etc/passwd", "/etc/shadow", "/etc/group", "/etc/gshadow")


@dataclass(frozen=True)
class UserState:
    shell: str
    home: str
    groups: frozenset[str]


def probe_user(name: str) -> str:
    return f"getent passwd {quote(name)} && id -nG {quote(name)}"


def parse_user(output: str) -> UserState | None:
    lines = output.splitlines()
    if not lines or ":" not in lines[0]:
        return None
    fields = lines[0].split(":")
    groups = frozenset(lines[1].split()) if len(lines) > 1 else frozenset()
    return UserState(shell=fields[6], home=fields[5], groups=groups)


def plan_user(name: str, current: UserState | None, shell: str, home: str,
              groups: Sequence[str]) -> Plan:
    """useradd/usermod commands for a login user; existing extra groups are kept."""
    if current is None:
        command = ["useradd", "--create-home", "--home-dir", home, "--shell", shell,
                   "--user-group"]
        if groups:
            command += ["--groups", ",".join(groups)]
        return Plan("created", action=join(*command, name))
    reasons, command = [], ["usermod"]
    if current.shell != shell:
        reasons.append(f"shell {current.shell} -> {shell}")
        command += ["--shell", shell]
    missing = [group for group in groups if group not in current.groups]
    if missing:
        reasons.append("added to " + ", ".join(missing))
        command += ["--append", "--groups", ",".join(missing)]
    if not reasons:
        return Plan("already as desired")
    return Plan(", ".join(reasons), action=join(*command, name))


def ensure_user(host: Host, name: str, *, shell: str = "/bin/bash", home: str = "",
                groups: Sequence[str] = (), safeguard: Safeguard | None = None,
                label: str = "") -> Step:
    """A login user with this shell, a home directory and at least these groups."""
    home_dir = home or f"/home/{name}"
    save = _account_saves(safeguard)

    def decide(probed: Probed) -> Plan:
        plan = plan_user(name, parse_user(probed.output), shell, home_dir, groups)
        return Plan(plan.reason, save + plan.action) if plan.action else plan

    return Step(label or f"user {name}", probe_user(name), decide, safeguard=safeguard)


def plan_group(name: str, output: str) -> Plan:
    """groupadd unless ``getent group`` found the group; pure."""
    if output.startswith(f"{name}:"):
        return Plan("exists")
    return Plan("created", action=join("groupadd", "--system", name))


def ensure_group(host: Host, name: str, *, label: str = "") -> Step:
    """A system group with this name, nothing else about it managed: roles grant access by
    membership (sshd's AllowGroups), so the group must exist before its first member."""
    def decide(probed: Probed) -> Plan:
        return plan_group(name, probed.output)

    return Step(label or f"group {name}", f"getent group {quote(name)} || true", decide)


def plan_group_member(user: str, group: str, current: UserState | None) -> Plan:
    """gpasswd to add an existing user to a group; pure. A missing user is unreadable state."""
    if current is None:
        return Plan(f"user {user} does not exist", action=(
            f"echo {quote(f'user {user} does not exist on the host')} >&2; exit 1"))
    if group in current.groups:
        return Plan(f"already in {group}")
    return Plan(f"added to {group}", action=join("gpasswd", "--add", user, group))


def ensure_group_member(host: Host, user: str, group: str, *,
                        safeguard: Safeguard | None = None, label: str = "") -> Step:
    """An existing user is a member of this group (its other memberships are left alone)."""
    save = _account_saves(safeguard)

    def decide(probed: Probed) -> Plan:
        plan = plan_group_member(user, group, parse_user(probed.output))
        return Plan(plan.reason, save + plan.action) if plan.changes and plan.action else plan

    return Step(label or f"user {user} in group {group}", probe_user(user), decide,
                safeguard=safeguard)


def _account_saves(safeguard: Safeguard | None) -> str:
    if safeguard is None:
        return ""
    return "".join(safeguard_save(safeguard.name, path) for path in ACCOUNT_FILES)


def ensure_authorized_keys(host: Host, user: str, keys: Sequence[str], *, home: str = "",
                           safeguard: Safeguard | None = None, label: str = "") -> list[Step]:
    """~user/.ssh/authorized_keys holding exactly these keys (0700 directory, 0600 file)."""
    home_dir = home or f"/home/{user}"
    content = "".join(key.strip() + "\n" for key in keys)
    return [
        ensure_directory(host, f"{home_dir}/.ssh", owner=user, group=user, mode=0o700),
        ensure_file(host, f"{home_dir}/.ssh/authorized_keys", content, owner=user, group=user,
                    mode=0o600, safeguard=safeguard, label=label or f"authorized keys of {user}"),
    ]


def ensure_sudoers(host: Host, name: str, content: str, *, safeguard: Safeguard | None = None,
                   label: str = "") -> Step:
    """A drop-in in /etc/sudoers.d that ``visudo -c`` accepted before it went live."""
    if "." in name or name.endswith("~"):
        raise ValueError(f"sudoers drop-in {name!r} would be ignored by sudo (no '.' or '~')")
    return ensure_file(host, f"/etc/sudoers.d/{name}", content, mode=0o440,
                       validate="visudo -cqf %s", safeguard=safeguard,
                       label=label or f"sudoers {name}")
