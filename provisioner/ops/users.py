"""Users with their authorized keys, and sudoers drop-ins that visudo accepts before activation."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from provisioner.commands import join, quote
from provisioner.host import Host
from provisioner.ops.files import ensure_directory, ensure_file
from provisioner.step import Plan, Probed, Step


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
                groups: Sequence[str] = (), label: str = "") -> Step:
    """A login user with this shell, a home directory and at least these groups."""
    home_dir = home or f"/home/{name}"

    def decide(probed: Probed) -> Plan:
        return plan_user(name, parse_user(probed.output), shell, home_dir, groups)

    return Step(label or f"user {name}", probe_user(name), decide)


def ensure_authorized_keys(host: Host, user: str, keys: Sequence[str], *, home: str = "",
                           label: str = "") -> list[Step]:
    """~user/.ssh/authorized_keys holding exactly these keys (0700 directory, 0600 file)."""
    home_dir = home or f"/home/{user}"
    content = "".join(key.strip() + "\n" for key in keys)
    return [
        ensure_directory(host, f"{home_dir}/.ssh", owner=user, group=user, mode=0o700),
        ensure_file(host, f"{home_dir}/.ssh/authorized_keys", content, owner=user, group=user,
                    mode=0o600, label=label or f"authorized keys of {user}"),
    ]


def ensure_sudoers(host: Host, name: str, content: str, *, label: str = "") -> Step:
    """A drop-in in /etc/sudoers.d that ``visudo -c`` accepted before it went live."""
    if "." in name or name.endswith("~"):
        raise ValueError(f"sudoers drop-in {name!r} would be ignored by sudo (no '.' or '~')")
    return ensure_file(host, f"/etc/sudoers.d/{name}", content, mode=0o440,
                       validate="visudo -cqf %s", label=label or f"sudoers {name}")
