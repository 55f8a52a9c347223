"""The admin account: a key-only login user in the SSH group, with validated sudo rights.

It is created before sshd is restricted to that group. Its shell, groups, keys and sudo rights
decide whether the controller can still log in when the inventory logs in as the admin, so
those steps share the SSH steps' safeguard: armed revert, proof by a new login with the
inventory's credentials, revert when it fails. When the inventory logs in as another user, that
user joins the SSH group too, or AllowGroups would shut it out.
"""

from __future__ import annotations

from collections.abc import Iterator

from provisioner.commands import join, quote
from provisioner.host import Host
from provisioner.ops.access import Access, ensure_access
from provisioner.ops.checks import ensure_command_result
from provisioner.ops.users import (
    ensure_authorized_keys,
    ensure_group,
    ensure_group_member,
    ensure_sudoers,
    ensure_user,
)
from provisioner.step import Step
from roles.hardening.ssh import access_safeguard

#: Name of the sudoers drop-in (no '.' or '~', which sudo would skip).
SUDOERS_NAME = "provisioner-admin"


def admin_steps(host: Host) -> Iterator[Step]:
    """Group, user, keys, sudo rights, no password ageing, private home (§1.3, §1.4, §2.1)."""
    user = str(host.vars["hardening_admin_user"])
    group = str(host.vars["hardening_ssh_allow_group"])
    home = f"/home/{user}"
    safeguard = access_safeguard(host.vars)
    yield ensure_group(host, group, label=f"group {group} (may log in over SSH) [controls §2.3]")
    yield ensure_user(host, user, shell=str(host.vars["hardening_admin_shell"]), home=home,
                      groups=[group], safeguard=safeguard, label=f"admin user {user}")
    login = host.config.user
    if login not in (user, "root"):
        yield ensure_group_member(host, login, group, safeguard=safeguard,
                                  label=f"login user {login} in group {group} (keeps SSH access)")
    yield from ensure_authorized_keys(host, user, host.vars["hardening_admin_authorized_keys"],
                                      home=home, safeguard=safeguard,
                                      label=f"authorized keys of {user} [controls §2]")
    yield ensure_sudoers(host, SUDOERS_NAME, host.render("etc/sudoers.d/provisioner-admin.j2"),
                         safeguard=safeguard, label=f"sudoers {SUDOERS_NAME} (visudo-checked)")
    yield _password_never_expires(host, user)
    yield ensure_access(host, [Access(home, None, None, 0o750, remove_only=True)],
                        label=f"home of {user} not readable by others [controls §1.4]")


def _password_never_expires(host: Host, user: str) -> Step:
    """Keep login.defs ageing from ever applying to the key-only admin (§1.11.5).

    With UsePAM, an expired password blocks even key logins and sudo; the admin has no password
    to renew, so an expiry would lock the only admin out 60 days after creation.
    """
    probe = (f"if entry=$(getent shadow {quote(user)}); then "
             "max=$(printf '%s' \"$entry\" | cut -d: -f5); "
             "case \"$max\" in ''|99999|-1) echo 'no expiry' ;; *) echo \"expires after $max "
             "days\" ;; esac; else echo 'unreadable: the user does not exist yet'; fi")
    return ensure_command_result(
        host, f"password of {user} never expires [controls §1.11.5]", probe,
        wanted="no expiry", action=join("chage", "--maxdays", "-1", user), reason="no expiry")
