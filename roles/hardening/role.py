"""hardening: a fresh Debian/Ubuntu server becomes a key-only, audited, least-privilege host.

Implements controls.md §1 (OS), §2 (SSH), the Lynis quick wins of §12 and the choices of §13.

Design choices, in short (the defaults.yml comments give each value's reason):

- **sshd_config is rendered whole, without the Include line** (§2.4.1). sshd keeps the first value
  it reads for each keyword and Debian's stock file includes ``sshd_config.d/*.conf`` at the top,
  so any drop-in (cloud-init's ``PasswordAuthentication yes``) would beat our values. Without the
  Include, whatever lands in that directory later is ignored; the inventory's
  ``hardening_sshd_extra_options`` are placed first in our file and validated with it.
- **Every sshd change is guarded.** The config is checked with ``sshd -t`` before it replaces the
  live one, and all sshd steps share one Safeguard: the engine arms a revert timer, reloads sshd
  through the ``ssh:reload`` handler, then proves a new login as ``hardening_admin_user``, and
  restores the previous files if that fails. ``/run/sshd`` (needed by ``sshd -t``) is not created
  here: ssh.service's ``RuntimeDirectory=sshd`` makes it whenever sshd runs, and we connect
  through that sshd.
- **SSH admits one group** (AllowGroups ``hardening_ssh_allow_group``), created here with the admin
  in it, so later roles grant SSH by group membership instead of editing sshd.
- **Lynis is the target where it disagrees with dev-sec's ssh-baseline** (§2.3): MaxSessions 2,
  ClientAliveCountMax 2, PrintLastLog yes; the port stays 22 to match the ufw and fail2ban roles.
- **Containers**: auditd and AppArmor are skipped (the kernel is the host's), kernel sysctls are
  reported rather than set (ensure_sysctl), time sync is enabled but not required to run.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

from provisioner.errors import RoleError
from provisioner.host import Host
from provisioner.inventory.hosts import HostConfig
from provisioner.login_keys import PublicKey, login_public_key
from provisioner.ops.systemd import restart_service
from provisioner.step import Step, check_safeguard_timeout
from roles.hardening import admin, packages, ssh, system

HANDLERS = (
    ssh.reload_handler(),
    restart_service("systemd-journald.service", name=packages.JOURNALD_RESTART),
)

_NAME = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
_KEY = re.compile(r"^(ssh-|ecdsa-|sk-)\S+ \S+")
_UMASK = re.compile(r"^0?[0-7]{3}$")
_TIME_SERVICES = ("systemd-timesyncd", "chrony")


def steps(host: Host) -> Iterator[Step]:
    """The role in order: sources and packages first, then people, SSH, kernel, services."""
    yield from packages.security_repository_steps(host)
    yield from packages.package_steps(host)
    yield from packages.update_steps(host)
    yield from admin.admin_steps(host)
    yield from system.banner_steps(host)
    yield from ssh.ssh_steps(host)
    yield from system.sysctl_steps(host)
    yield from system.login_steps(host)
    yield from system.pam_steps(host)
    yield from system.core_dump_steps(host)
    yield from system.module_steps(host)
    yield from system.shm_steps(host)
    yield from system.permission_steps(host)
    yield from packages.service_steps(host)
    yield from packages.rootkit_scanner_steps(host)


def validate(variables: Mapping[str, Any]) -> None:
    """Refuse settings that would lock the admin out or break a config, before any connection."""
    _validate_admin(variables)
    for option in variables["hardening_sshd_extra_options"]:
        if not isinstance(option, str) or "\n" in option:
            raise RoleError(f"hardening_sshd_extra_options entry {option!r} must be one sshd_config"
                            " line (a string without newlines).")
    if not _UMASK.fullmatch(str(variables["hardening_umask"])):
        raise RoleError(f"hardening_umask {variables['hardening_umask']!r} is not an octal umask "
                        "such as \"027\" (quote it in YAML, or it becomes the number 27).")
    check_safeguard_timeout("hardening_ssh_safeguard_timeout",
                            variables["hardening_ssh_safeguard_timeout"])
    if variables["hardening_time_sync_service"] not in _TIME_SERVICES:
        raise RoleError(f"hardening_time_sync_service must be one of {', '.join(_TIME_SERVICES)};"
                        f" got {variables['hardening_time_sync_service']!r}.")


def _validate_admin(variables: Mapping[str, Any]) -> None:
    user, group = str(variables["hardening_admin_user"]), variables["hardening_ssh_allow_group"]
    if user == "root" or not _NAME.fullmatch(user):
        raise RoleError(f"hardening_admin_user {user!r} must be a regular login name (lowercase "
                        "letters, digits, '_' or '-'; not root, whose SSH login is switched off).")
    if not isinstance(group, str) or not _NAME.fullmatch(group):
        raise RoleError(f"hardening_ssh_allow_group {group!r} is not a valid group name.")
    keys = variables["hardening_admin_authorized_keys"]
    if not keys:
        raise RoleError(f"hardening_admin_authorized_keys is empty: the hardening role switches "
                        f"SSH password logins off, so {user!r} would have no way in. Set it to the "
                        "admin's public key line(s), e.g. [\"ssh-ed25519 AAAA... you@laptop\"].")
    for key in keys:
        if not isinstance(key, str) or not _KEY.match(key.strip()):
            raise RoleError(f"hardening_admin_authorized_keys entry {key!r} is not a public key "
                            "line (\"<type> <base64> [comment]\", type ssh-*, ecdsa-* or sk-*).")


def validate_login(config: HostConfig, variables: Mapping[str, Any]) -> None:
    """Refuse, before any contact, settings under which the inventory's own login would stop
    working by design; what cannot be known here the safeguard's proof catches on the host."""
    if config.user == "root":
        raise RoleError(ROOT_LOGIN_OFF.format(admin=variables["hardening_admin_user"]))
    port = int(variables["hardening_ssh_port"])
    if port != config.port:
        raise RoleError(PORT_MOVES.format(port=port, current=config.port))
    if config.user == str(variables["hardening_admin_user"]):
        _validate_admin_login(config, variables)


def _validate_admin_login(config: HostConfig, variables: Mapping[str, Any]) -> None:
    user = config.user
    shell = str(variables["hardening_admin_shell"])
    if not shell.startswith("/"):
        raise RoleError(f"hardening_admin_shell {shell!r} must be an absolute path such as "
                        "/bin/bash: sshd refuses a login whose shell it cannot find.")
    if shell.rsplit("/", 1)[-1] in ("nologin", "false"):
        raise RoleError(f"the inventory logs in as {user!r}, and hardening_admin_shell {shell!r}"
                        " would refuse that login. Keep a real shell for the login user.")
    if not variables["hardening_admin_sudo_nopasswd"] and config.ssh.sudo_password is None:
        raise RoleError(f"hardening_admin_sudo_nopasswd is false, so sudo would ask {user!r} for "
                        "a password, and the inventory has no ssh.sudo_password for this host. "
                        "Set ssh.sudo_password (as a secret reference) in the same change.")
    key = login_public_key(config)
    wanted = {PublicKey.parse(line) for line in variables["hardening_admin_authorized_keys"]}
    if key is not None and key not in wanted:
        raise RoleError(KEY_DROPPED.format(user=user, file=config.ssh.identity_file,
                                           fingerprint=key.fingerprint))


ROOT_LOGIN_OFF = (
    "the inventory logs in as root, and the hardening role switches root's SSH login off "
    "(PermitRootLogin no), so no later run could log in. Log in as the admin user instead: on a "
    "host that has only root today, create it first as root (useradd -m -s /bin/bash {admin}; "
    "install -d -m 700 -o {admin} -g {admin} ~{admin}/.ssh; install -m 600 -o {admin} -g "
    "{admin} ~/.ssh/authorized_keys ~{admin}/.ssh/; echo '{admin} ALL=(ALL) NOPASSWD:ALL' > "
    "/etc/sudoers.d/bootstrap), then set user: {admin} for the host and run again (the role "
    "takes the account over).")
PORT_MOVES = (
    "hardening_ssh_port is {port} but the inventory logs in on port {current}: sshd would stop "
    "listening where the next run connects. Move it in two runs: first add "
    "hardening_sshd_extra_options: [\"Port {port}\"] and allow {port}/tcp in the firewall rules "
    "(sshd then listens on both ports), run; then set port: {port} and hardening_ssh_port: "
    "{port} in the inventory, drop the extra option, and run again.")
KEY_DROPPED = (
    "hardening_admin_authorized_keys does not hold the key this inventory logs in with "
    "({file}, {fingerprint}), and the role writes exactly that list to {user}'s "
    "authorized_keys, so the next login as {user} would fail. To move to a new key: add the new "
    "key beside the current one and run; point ssh.identity_file at the new key and run; then "
    "remove the old key and run again.")
