"""The hardening role's plans on hand-made bookworm and trixie hosts: no network, real templates."""

from __future__ import annotations

import re
import subprocess
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from provisioner.content.roles import PROJECT_ROOT, load_role
from provisioner.content.variables import check_login_kept, merge_role_variables
from provisioner.errors import RoleError
from provisioner.facts import Facts
from provisioner.host import Host
from provisioner.inventory.hosts import HostConfig, SshSettings
from provisioner.ops.apt_sources import main_mirror, parse_apt_entries
from provisioner.run.safeguards import Arming
from provisioner.secrets.values import Secret
from provisioner.step import Probed, ProbeUnreadable, Refused, Safeguard, Step
from roles.hardening.packages import (
    plan_security_sources,
    render_security_sources,
    security_uri,
    wanted_packages,
)
from roles.hardening.ssh import crypto_for, plan_moduli
from roles.hardening.system import blocked_filesystems, login_defs_lines, sysctl_settings

ROLE_DIR = PROJECT_ROOT / "roles" / "hardening"
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExampleKeyOnlyForTests admin@example.org"
INVENTORY: dict[str, Any] = {"hardening_admin_user": "admin",
                             "hardening_admin_authorized_keys": [KEY]}
MIRROR_LINES = ("URIs: http://mirror.example.org/debian", "Suites: bookworm bookworm-updates",
                "Components: main non-free-firmware")

BOOKWORM = Facts(
    os_id="debian", os_version="12", os_codename="bookworm", os_like=(), cpus=2,
    memory_bytes=2 << 30, disks=(), init="systemd", virtualization="kvm", hostname="web1",
    kernel="6.1.0-28-amd64", architecture="amd64", efi=False, openssh_version=(9, 2),
    mounts={"/": "ext4", "/run": "tmpfs"}, apt_sources=MIRROR_LINES[:2])
TRIXIE = replace(BOOKWORM, os_version="13", os_codename="trixie", openssh_version=(10, 0),
                 apt_sources=("URIs: http://mirror.example.org/debian", "Suites: trixie"))


def merged(**overrides: Any) -> dict[str, Any]:
    return merge_role_variables([load_role(ROLE_DIR)], {**INVENTORY, **overrides}, "test")


def make_host(facts: Facts = BOOKWORM, *, show_diff: bool = True, **overrides: Any) -> Host:
    ssh = SshSettings(identity_file=None, known_hosts=Path("/dev/null"), trust_on_first_use=False,
                      jump_host=None, connect_timeout=10.0, command_timeout=60.0,
                      sudo_password=None)
    config = HostConfig("web1", "192.0.2.10", 22, "admin", (), ("hardening",), {}, ssh)
    host = Host(config, merged(**overrides), gather_facts=lambda: facts, show_diff=show_diff)
    host = host.for_role(ROLE_DIR / "templates")
    return host


def role_steps(host: Host) -> list[Step]:
    return list(load_role(ROLE_DIR).steps(host))


def step_named(host: Host, fragment: str) -> Step:
    matches = [step for step in role_steps(host) if fragment in step.label]
    assert len(matches) == 1, [step.label for step in role_steps(host)]
    return matches[0]


def written_lines(step: Step) -> list[str]:
    """The lines a file step would write to an absent file (from its diff)."""
    plan = step.decide(Probed("absent"))
    assert plan.action is not None and plan.diff is not None
    return [line[1:] for line in plan.diff.splitlines()
            if line.startswith("+") and not line.startswith("+++")]


def sshd_lines(host: Host) -> list[str]:
    return written_lines(step_named(host, "/etc/ssh/sshd_config"))


# --- SSH -------------------------------------------------------------------------------------

@pytest.mark.parametrize(("version", "first_kex"), [
    ((10, 0), "mlkem768x25519-sha256"),
    ((9, 9), "mlkem768x25519-sha256"),
    ((9, 2), "sntrup761x25519-sha512@openssh.com"),
    ((8, 9), "sntrup761x25519-sha512@openssh.com"),
    ((8, 2), "sntrup4591761x25519-sha512@tinyssh.org"),
    ((7, 4), "curve25519-sha256@libssh.org"),
    (None, "sntrup761x25519-sha512@openssh.com"),
])
def test_key_exchange_follows_the_openssh_version(version: tuple[int, int] | None,
                                                  first_kex: str) -> None:
    crypto = crypto_for(version)
    assert crypto.kex[0] == first_kex
    assert crypto.kex[-2:] == ("curve25519-sha256@libssh.org",
                               "diffie-hellman-group-exchange-sha256")


def test_openssh_older_than_6_6_is_refused() -> None:
    with pytest.raises(RoleError, match=r"older than 6\.6"):
        crypto_for((6, 0))


@pytest.mark.parametrize(("facts", "kex"), [
    (BOOKWORM, "KexAlgorithms sntrup761x25519-sha512@openssh.com,curve25519-sha256@libssh.org,"
               "diffie-hellman-group-exchange-sha256"),
    (TRIXIE, "KexAlgorithms mlkem768x25519-sha256,sntrup761x25519-sha512@openssh.com,"
             "curve25519-sha256@libssh.org,diffie-hellman-group-exchange-sha256"),
])
def test_sshd_config_carries_the_crypto_of_the_hosts_openssh(facts: Facts, kex: str) -> None:
    lines = sshd_lines(make_host(facts))
    assert kex in lines
    assert ("Ciphers chacha20-poly1305@openssh.com,aes256-gcm@openssh.com,aes128-gcm@openssh.com,"
            "aes256-ctr,aes192-ctr,aes128-ctr") in lines
    assert ("MACs hmac-sha2-512-etm@openssh.com,hmac-sha2-256-etm@openssh.com,"
            "umac-128-etm@openssh.com,hmac-sha2-512,hmac-sha2-256") in lines


def test_inventory_crypto_lists_replace_the_version_defaults() -> None:
    lines = sshd_lines(make_host(hardening_ssh_ciphers=["aes256-gcm@openssh.com"]))
    assert "Ciphers aes256-gcm@openssh.com" in lines


@pytest.mark.parametrize("directive", [
    "PermitRootLogin no", "PasswordAuthentication no", "KbdInteractiveAuthentication no",
    "AuthenticationMethods publickey", "MaxAuthTries 3", "LoginGraceTime 30", "LogLevel VERBOSE",
    "AllowAgentForwarding no", "AllowTcpForwarding no", "X11Forwarding no", "PermitTunnel no",
    "ClientAliveInterval 300", "ClientAliveCountMax 2", "MaxSessions 2", "UseDNS no",
    "PermitUserEnvironment no", "AllowGroups sshusers", "DebianBanner no", "Banner /etc/issue.net",
    "HostKey /etc/ssh/ssh_host_ed25519_key", "HostKey /etc/ssh/ssh_host_ecdsa_key",
    "HostKey /etc/ssh/ssh_host_rsa_key",
    "Subsystem sftp internal-sftp -l INFO -f LOCAL6 -u 0027",
])
def test_sshd_config_holds_the_hardened_directive(directive: str) -> None:
    assert directive in sshd_lines(make_host())


def test_sshd_config_includes_no_drop_ins() -> None:
    assert not [line for line in sshd_lines(make_host()) if line.lower().startswith("include")]


def test_sshd_step_validates_writes_0600_reloads_and_is_guarded() -> None:
    step = step_named(make_host(), "/etc/ssh/sshd_config")
    action = step.decide(Probed("absent")).action or ""
    assert "/usr/sbin/sshd -t -f \"$tmp\"" in action
    assert "chmod 0600" in action
    assert step.notify == ("ssh:reload",)
    assert step.safeguard is not None
    assert (step.safeguard.name, step.safeguard.timeout) == ("ssh-access", 120)


def test_extra_options_come_first_and_match_blocks_last() -> None:
    lines = sshd_lines(make_host(hardening_sshd_extra_options=[
        "AllowUsers nobody", "Match User backup", "  ForceCommand internal-sftp"]))
    assert lines.index("AllowUsers nobody") < lines.index("PermitRootLogin no")
    assert lines.index("Match User backup") > lines.index("Subsystem sftp internal-sftp -l INFO "
                                                          "-f LOCAL6 -u 0027")
    assert lines[-1] == "  ForceCommand internal-sftp"


def test_every_step_that_decides_the_login_shares_one_safeguard() -> None:
    guarded = [step for step in role_steps(make_host()) if step.safeguard is not None]
    assert [step.label.split(" [")[0] for step in guarded] == [
        "admin user admin", "authorized keys of admin",
        "sudoers provisioner-admin (visudo-checked)",
        "ssh host keys ed25519, ecdsa, rsa", "ssh moduli of at least 3072 bits",
        "template /etc/ssh/sshd_config", "masked ssh.socket"]
    assert {step.safeguard for step in guarded} == {guarded[0].safeguard}


def test_socket_activation_goes_off_with_ssh_service_enabled_and_running() -> None:
    step = next(step for step in role_steps(make_host()) if "ssh.socket" in step.label)
    action = step.decide(Probed("socket enabled, ssh.service disabled\n")).action or ""
    assert action.index("absent /etc/systemd/system/ssh.socket") < action.index("mask --now")
    assert "systemctl enable --quiet ssh.service" in action
    assert "systemctl restart ssh.service" in action
    assert step.decide(Probed("masked, service enabled and running\n")).action is None
    # A stopped sshd (the kept login still works) is not converged: the next login would fail.
    stopped = step.decide(Probed("socket masked, ssh.service enabled and inactive\n"))
    assert stopped.action is not None and "systemctl restart" in stopped.action


def test_a_guarded_account_change_saves_the_account_files_first() -> None:
    user_step = next(step for step in role_steps(make_host()) if step.label == "admin user admin")
    action = user_step.decide(Probed("")).action or ""
    assert action.index("/etc/shadow") < action.index("useradd")
    assert "safeguard/ssh-access/manifest" in action


def test_a_login_user_other_than_the_admin_joins_the_ssh_group() -> None:
    host = make_host()
    host.config = replace(host.config, user="deploy")
    step = next(step for step in role_steps(host) if "login user deploy" in step.label)
    assert step.safeguard is not None
    probed = Probed("deploy:x:1001:1001::/home/deploy:/bin/bash\ndeploy sudo\n")
    assert "gpasswd --add deploy sshusers" in (step.decide(probed).action or "")


def login_config(user: str = "admin", port: int = 22, identity: Path | None = None,
                 sudo_password: Secret | None = None) -> HostConfig:
    ssh = SshSettings(identity_file=identity, known_hosts=Path("/dev/null"),
                      trust_on_first_use=False, jump_host=None, connect_timeout=10.0,
                      command_timeout=60.0, sudo_password=sudo_password)
    return HostConfig("web1", "192.0.2.10", port, user, (), ("hardening",), {}, ssh)


def refusal(config: HostConfig, **overrides: Any) -> str:
    with pytest.raises(RoleError) as raised:
        check_login_kept([load_role(ROLE_DIR)], config, merged(**overrides))
    return str(raised.value)


def test_logging_in_as_root_is_refused_with_the_way_to_an_admin_login() -> None:
    message = refusal(login_config(user="root"))
    assert "PermitRootLogin no" in message and "set user: admin" in message


def test_moving_the_ssh_port_in_one_run_is_refused_with_the_two_step_way() -> None:
    message = refusal(login_config(), hardening_ssh_port=2222)
    assert "Port 2222" in message and "port: 2222" in message


def test_admin_keys_without_the_login_key_are_refused_naming_its_fingerprint(
        tmp_path: Path) -> None:
    identity = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(identity)],
                   check=True)
    fingerprint = subprocess.run(["ssh-keygen", "-l", "-f", str(identity)], capture_output=True,
                                 text=True, check=True).stdout.split()[1]
    message = refusal(login_config(identity=identity))
    assert fingerprint in message and str(identity) in message


@pytest.mark.parametrize("with_public_half", [True, False])
def test_admin_keys_holding_the_login_key_pass(tmp_path: Path, with_public_half: bool) -> None:
    identity = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(identity)],
                   check=True)
    public = identity.with_suffix(".pub").read_text()
    if not with_public_half:
        identity.with_suffix(".pub").unlink()
    check_login_kept([load_role(ROLE_DIR)], login_config(identity=identity),
                     merged(hardening_admin_authorized_keys=[KEY, public]))


def test_an_unknowable_login_key_is_left_to_the_safeguard() -> None:
    check_login_kept([load_role(ROLE_DIR)], login_config(identity=None), merged())


@pytest.mark.parametrize(("overrides", "message"), [
    ({"hardening_admin_shell": "/usr/sbin/nologin"}, "real shell"),
    ({"hardening_admin_shell": "bash"}, "absolute path"),
    ({"hardening_admin_sudo_nopasswd": False}, "ssh.sudo_password"),
])
def test_admin_settings_that_end_the_login_are_refused(overrides: dict[str, Any],
                                                       message: str) -> None:
    assert message in refusal(login_config(), **overrides)


def test_a_sudo_password_in_the_inventory_allows_sudo_with_a_password() -> None:
    check_login_kept([load_role(ROLE_DIR)], login_config(sudo_password=Secret("pw")),
                     merged(hardening_admin_sudo_nopasswd=False))


def test_reload_handler_waits_for_sshd_to_listen_again() -> None:
    handlers = load_role(ROLE_DIR).handlers
    action = handlers["ssh:reload"].action
    assert "systemctl reload-or-restart ssh.service || exit 1" in action
    assert "sleep 0.1" in action


def test_reload_handler_finds_sshd_listening_without_iproute2() -> None:
    action = load_role(ROLE_DIR).handlers["ssh:reload"].action
    assert "/proc/net/tcp" in action and "/run/sshd.pid" in action
    assert "ss -" not in action


@pytest.mark.parametrize(("output", "reason", "acts"), [
    ("60 363\n", "removed 60 primes below 3072 bits (363 kept)", True),
    ("0 363\n", "no primes below 3072 bits (363 kept)", False),
    ("absent\n", "no /etc/ssh/moduli (sshd uses its built-in groups)", False),
    ("12 0\n", "every prime is below 3072 bits", True),
])
def test_weak_moduli_are_counted_and_removed(output: str, reason: str, acts: bool) -> None:
    plan = plan_moduli(output, 3072)
    assert (plan.reason, plan.changes) == (reason, acts)


def test_emptying_the_moduli_file_is_refused() -> None:
    assert "exit 1" in (plan_moduli("12 0", 3072).action or "")


@pytest.mark.parametrize(("facts", "label_kind"), [
    (BOOKWORM, "masked"),
    (replace(BOOKWORM, os_id="ubuntu", os_version="24.04"), "ubuntu"),
    (replace(BOOKWORM, os_version="11", os_codename="bullseye"), None),
])
def test_ssh_socket_is_masked_only_where_it_exists(facts: Facts, label_kind: str | None) -> None:
    steps = [step for step in role_steps(make_host(facts)) if "ssh.socket" in step.label]
    if label_kind is None:
        assert steps == []
    elif label_kind == "masked":
        assert "systemctl is-enabled ssh.service" in steps[0].probe
        assert steps[0].safeguard is not None
    else:
        assert "sockets.target.wants/ssh.socket" in steps[0].probe


# --- validate() --------------------------------------------------------------------------------

def test_empty_admin_keys_are_refused_before_any_connection() -> None:
    with pytest.raises(RoleError, match="hardening_admin_authorized_keys is empty"):
        merged(hardening_admin_authorized_keys=[])


@pytest.mark.parametrize(("variable", "value", "message"), [
    ("hardening_admin_authorized_keys", ["not a key"], "is not a public key line"),
    ("hardening_admin_user", "root", "must be a regular login name"),
    ("hardening_sshd_extra_options", ["Port 22\nPort 23"], "must be one sshd_config line"),
    ("hardening_umask", "27x", "is not an octal umask"),
    ("hardening_time_sync_service", "ntpd", "must be one of"),
    ("hardening_ssh_safeguard_timeout", 0, "from 120 to 3600"),
    ("hardening_ssh_safeguard_timeout", 10**9, "from 120 to 3600"),
    ("hardening_ssh_safeguard_timeout", float("nan"), "from 120 to 3600"),
])
def test_settings_that_break_a_host_are_refused(variable: str, value: Any, message: str) -> None:
    with pytest.raises(RoleError, match=message):
        merged(**{variable: value})


def test_missing_admin_user_is_required() -> None:
    with pytest.raises(RoleError, match="needs variable 'hardening_admin_user'"):
        merge_role_variables([load_role(ROLE_DIR)],
                             {"hardening_admin_authorized_keys": [KEY]}, "test")


# --- apt security archive --------------------------------------------------------------------

@pytest.mark.parametrize("lines", [
    MIRROR_LINES,
    ("deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] "
     "http://mirror.example.org/debian/ bookworm main non-free-firmware",),
])
def test_security_uri_is_the_main_mirror_path_plus_security(lines: tuple[str, ...]) -> None:
    mirror = main_mirror(parse_apt_entries(lines), "bookworm")
    assert mirror is not None
    assert security_uri(mirror.uris[0], "debian") == "http://mirror.example.org/debian-security"
    assert mirror.components == ["main", "non-free-firmware"]


def test_security_sources_file_names_the_codename_suite_in_one_line() -> None:
    assert render_security_sources("http://mirror.example.org/debian-security", "bookworm",
                                   ["main"], "debian").splitlines()[1:] == [
        "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] "
        "http://mirror.example.org/debian-security bookworm-security main"]


def test_lynis_finds_the_security_archive_in_the_file_written() -> None:
    # PKGS-7388 of Lynis 3.0.8: egrep "security.debian.org|security.ubuntu.com|security/? "
    written = render_security_sources("http://mirror.example.org/debian-security", "bookworm",
                                      ["main"], "debian")
    assert re.search(r"security\.debian\.org|security\.ubuntu\.com|security/? ",
                     "".join(line for line in written.splitlines() if "#" not in line))


def test_the_deb822_file_of_earlier_versions_is_removed_with_the_lists_refreshed() -> None:
    step = step_named(make_host(), "deb822 security source of earlier versions gone")

    removal = step.decide(Probed("present\n"))

    assert removal.action is not None and removal.action.startswith(
        "rm -f /etc/apt/sources.list.d/provisioner-security.sources && ")
    assert " update" in removal.action and step.changes_facts
    assert step.decide(Probed("absent\n")).action is None


def test_missing_security_archive_is_added_and_lists_refreshed() -> None:
    output = "\n".join(MIRROR_LINES) + "\n--- ours\nabsent\n"
    plan = plan_security_sources(output, merged(), BOOKWORM, show_diff=True)
    assert plan.diff is not None
    assert " http://mirror.example.org/debian-security bookworm-security main non-free-firmware" \
        in plan.diff
    action = plan.action or ""
    assert "update --error-on=any; then rm -f /etc/apt/sources.list.d/provisioner-security" \
        ".list" in action
    assert "chmod 0644" in action


@pytest.mark.parametrize("sources", ["", "deb http://deb.example.org/other stable main\n"],
                         ids=["no sources", "no main mirror"])
def test_no_main_mirror_and_no_security_uri_refuses_the_step_naming_the_variable(
        sources: str) -> None:
    with pytest.raises(Refused, match="set hardening_apt_security_uri"):
        plan_security_sources(sources + "--- ours\nabsent\n", merged(), BOOKWORM)


def test_a_security_uri_with_credentials_is_written_for_root_alone() -> None:
    output = "\n".join(MIRROR_LINES) + "\n--- ours\nabsent\n"
    plan = plan_security_sources(output, merged(hardening_apt_security_uri="http://u:p@m.example/s"),
                                 BOOKWORM)
    assert "chmod 0600" in (plan.action or "")


def test_a_security_uri_given_as_a_secret_reaches_the_host_as_its_value() -> None:
    output = "\n".join(MIRROR_LINES) + "\n--- ours\nabsent\n"
    host = make_host(hardening_apt_security_uri=Secret("http://bob:pw@mirror.example.org/sec"))
    plan = step_named(host, "apt security archive [").decide(Probed(output))
    assert plan.diff is not None and " http://bob:pw@mirror.example.org/sec " in plan.diff


def test_host_with_its_own_security_source_is_left_alone() -> None:
    output = "\n".join([*MIRROR_LINES, "URIs: http://mirror.example.org/debian-security",
                        "Suites: bookworm-security"]) + "\n--- ours\nabsent\n"
    plan = plan_security_sources(output, merged(), BOOKWORM)
    assert (plan.reason, plan.action) == (
        "already in the host's apt sources (bookworm-security)", None)


def test_security_uri_variable_overrides_the_derivation() -> None:
    output = "\n".join(MIRROR_LINES) + "\n--- ours\nabsent\n"
    plan = plan_security_sources(
        output, merged(hardening_apt_security_uri="http://security.example.org/debian-security"),
        BOOKWORM, show_diff=True)
    assert plan.diff is not None
    assert " http://security.example.org/debian-security bookworm-security" in plan.diff


# --- kernel ------------------------------------------------------------------------------------

def test_vfat_is_kept_on_efi_hosts() -> None:
    assert "vfat" in blocked_filesystems(merged(), BOOKWORM)
    assert "vfat" not in blocked_filesystems(merged(), replace(BOOKWORM, efi=True))


def test_mounted_filesystem_types_are_never_blocked() -> None:
    facts = replace(BOOKWORM, mounts={"/": "ext4", "/snap/core/1": "squashfs"})
    lines = written_lines(step_named(make_host(facts), "unused kernel modules"))
    assert "install squashfs /bin/true" not in lines
    assert "install cramfs /bin/true" in lines
    assert "install usb-storage /bin/true" in lines


@pytest.mark.parametrize(("forward", "value"), [(False, 0), (True, 1)])
def test_ip_forwarding_follows_the_inventory(forward: bool, value: int) -> None:
    settings = sysctl_settings(merged(hardening_ip_forward=forward), BOOKWORM)
    assert [settings[key] for key in ("net.ipv4.ip_forward", "net.ipv4.conf.all.forwarding",
                                      "net.ipv6.conf.all.forwarding")] == [value] * 3
    assert list(settings)[:3] == ["net.ipv4.ip_forward", "net.ipv4.conf.all.forwarding",
                                  "net.ipv6.conf.all.forwarding"]


def test_sysctl_overrides_win_and_nothing_sets_modules_disabled() -> None:
    settings = sysctl_settings(merged(hardening_sysctl_overrides={"net.ipv4.ip_forward": 1}),
                               BOOKWORM)
    assert settings["net.ipv4.ip_forward"] == 1
    assert settings["fs.protected_fifos"] == 2
    assert "kernel.modules_disabled" not in settings
    assert "vm.mmap_rnd_bits" not in settings


def test_containers_set_only_their_own_network_keys() -> None:
    container = replace(BOOKWORM, virtualization="systemd-nspawn")
    settings = sysctl_settings(merged(), container)
    assert settings and all(key.startswith("net.") for key in settings)


def test_forwarding_is_applied_in_a_step_before_the_other_running_values() -> None:
    labels = [step.label for step in role_steps(make_host()) if "sysctl" in step.label]
    assert labels[1].startswith("sysctl forwarding values")
    assert labels[2].startswith("sysctl values from")


# --- accounts, files, packages -----------------------------------------------------------------

def test_login_defs_lines_carry_the_umask() -> None:
    lines = login_defs_lines(merged())
    assert lines["UMASK"] == "UMASK\t027"
    assert lines["PASS_MAX_DAYS"] == "PASS_MAX_DAYS\t60"


def test_login_defs_step_waits_for_a_missing_file() -> None:
    with pytest.raises(ProbeUnreadable):
        step_named(make_host(), "/etc/login.defs").decide(Probed("absent"))


def test_account_files_and_cron_are_tightened_and_the_admin_home_closed_to_others() -> None:
    step = step_named(make_host(), "modes of account files and cron")
    output = "/etc/shadow|root|root|644\n/etc/cron.d|root|root|755\n/etc/passwd|root|root|644\n"

    assert step.decide(Probed(output)).action == (
        "chown root:shadow /etc/shadow && chmod 0640 /etc/shadow && chmod 0700 /etc/cron.d")
    home = step_named(make_host(), "home of admin not readable by others")
    assert home.decide(Probed("/home/admin|admin|admin|755\n")).action == "chmod 0750 /home/admin"


@pytest.mark.parametrize(("output", "action"), [
    ("no expiry\n", None),
    ("expires after 60 days\n", "chage --maxdays -1 admin"),
])
def test_admin_password_ageing_is_switched_off(output: str, action: str | None) -> None:
    step = step_named(make_host(), "password of admin never expires")
    assert step.decide(Probed(output)).action == action


def test_password_ageing_waits_for_the_user() -> None:
    step = step_named(make_host(), "password of admin never expires")
    with pytest.raises(ProbeUnreadable, match="does not exist yet"):
        step.decide(Probed("unreadable: the user does not exist yet"))


def test_kernel_bound_packages_are_skipped_in_containers() -> None:
    container = replace(BOOKWORM, virtualization="systemd-nspawn")
    assert {"auditd", "apparmor"} <= set(wanted_packages(merged(), BOOKWORM))
    assert not {"auditd", "apparmor"} & set(wanted_packages(merged(), container))
    labels = " ".join(step.label for step in role_steps(make_host(container)))
    assert "auditd" not in labels and "AppArmor" not in labels


def test_time_sync_is_only_enabled_in_containers() -> None:
    step = step_named(make_host(replace(BOOKWORM, virtualization="systemd-nspawn")), "time sync")
    state = "LoadState=loaded\nUnitFileState=enabled\nActiveState=inactive\n"
    assert not step.decide(Probed(state)).changes


def test_sudoers_drop_in_is_visudo_checked_and_passwordless_by_default() -> None:
    lines = written_lines(step_named(make_host(), "sudoers"))
    assert "admin ALL=(ALL:ALL) NOPASSWD: ALL" in lines
    action = step_named(make_host(), "sudoers").decide(Probed("absent")).action or ""
    assert "visudo -cqf" in action


# --- mount options -----------------------------------------------------------------------------

SHM_LABEL = "/dev/shm mounted"


def test_dev_shm_goes_into_fstab_without_exec_setuid_or_devices() -> None:
    step = step_named(make_host(), "/dev/shm in /etc/fstab")
    plan = step.decide(Probed("absent"))
    assert plan.diff is not None and "+tmpfs /dev/shm tmpfs defaults,nosuid,nodev,noexec 0 0" \
        in plan.diff


@pytest.mark.parametrize(("output", "acts"), [
    ("nosuid,nodev,noexec", False),
    ("rw,nosuid,nodev,size=2468360k", True),
])
def test_dev_shm_is_remounted_only_when_an_option_is_missing(output: str, acts: bool) -> None:
    plan = step_named(make_host(), SHM_LABEL).decide(Probed(output))
    assert (plan.action is not None) is acts
    assert plan.action is None or "remount,nosuid,nodev,noexec /dev/shm" in plan.action


@pytest.mark.parametrize(("mounts", "printed"), [
    ("tmpfs /dev/shm tmpfs rw,nosuid,nodev,noexec,relatime 0 0\n", "nosuid,nodev,noexec"),
    ("tmpfs /dev/shm tmpfs rw,nosuid,nodev 0 0\n", "rw,nosuid,nodev"),
    ("tmpfs /dev/shm tmpfs rw,noexec 0 0\ntmpfs /dev/shm tmpfs rw,nosuid,nodev 0 0\n",
     "rw,nosuid,nodev"),
    ("proc /proc proc rw 0 0\n", "not mounted"),
])
def test_the_dev_shm_probe_reads_the_last_mount(tmp_path: Path, mounts: str,
                                                 printed: str) -> None:
    (tmp_path / "mounts").write_text(mounts)
    probe = step_named(make_host(), SHM_LABEL).probe.replace("/proc/mounts",
                                                             str(tmp_path / "mounts"))
    done = subprocess.run(["sh", "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == printed


def test_dev_shm_can_be_left_alone() -> None:
    labels = [step.label for step in role_steps(make_host(hardening_shm_noexec_enabled=False))]
    assert not [label for label in labels if "/dev/shm" in label]


# --- the role's own bookkeeping ----------------------------------------------------------------

@pytest.mark.parametrize("facts", [BOOKWORM, TRIXIE])
def test_every_step_plans_against_a_fresh_host(facts: Facts) -> None:
    steps = role_steps(make_host(facts))
    assert len(steps) > 30
    assert len({step.label for step in steps}) == len(steps)


def test_every_default_has_a_comment_above_it() -> None:
    undocumented, commented = [], False
    for line in (ROLE_DIR / "defaults.yml").read_text().splitlines():
        if not line.strip():
            commented = False
        elif line.startswith("#"):
            commented = True
        elif not line[0].isspace() and not commented:
            undocumented.append(line.split(":")[0])
    assert undocumented == []


def test_the_role_reads_no_undeclared_variable() -> None:
    declared = set(load_role(ROLE_DIR).defaults)
    sources = [*ROLE_DIR.glob("*.py"), *(ROLE_DIR / "templates").rglob("*.j2")]
    used = {name for path in sources
            for name in re.findall(r"\bhardening_[a-z0-9_]+", path.read_text())}
    assert used - declared == set()
    assert used, "the scan found no variable at all"


def test_faillock_changes_the_pam_stack_under_the_access_safeguard() -> None:
    steps = role_steps(make_host(hardening_faillock_enabled=True))
    stack = next(step for step in steps if step.label.startswith("pam_faillock in the PAM"))
    action = stack.decide(Probed("auth 0, account 0")).action or ""
    assert stack.safeguard is not None and stack.safeguard.name == "ssh-access"
    assert action.index("/etc/pam.d/common-auth") < action.index("pam-auth-update")


UFW_DIR = PROJECT_ROOT / "roles" / "ufw"


def test_a_firewall_closing_the_login_port_is_refused_before_contact() -> None:
    ufw = load_role(UFW_DIR)
    variables = merge_role_variables([ufw], {"ufw_ssh_port": 2222}, "test")
    with pytest.raises(RoleError, match="ufw_ssh_port is 2222 but the inventory logs in on port"):
        check_login_kept([ufw], login_config(), variables)


def test_a_firewall_revert_too_quick_to_guard_is_refused() -> None:
    with pytest.raises(RoleError, match="from 120 to 3600"):
        merge_role_variables([load_role(UFW_DIR)], {"ufw_safeguard_timeout": 0}, "test")


def test_the_engine_refuses_to_arm_a_revert_shorter_than_the_minimum() -> None:
    with pytest.raises(RoleError, match="from 120 to 3600"):
        Arming.new(Safeguard("sshd", undo="true", timeout=0), 0.0)


def test_a_role_checks_a_secret_by_its_value_and_never_names_it() -> None:
    ufw = load_role(UFW_DIR)
    merge_role_variables([ufw], {"ufw_ssh_unlimited_sources": [Secret("10.77.0.0/24")]}, "t")
    with pytest.raises(RoleError) as raised:
        merge_role_variables([ufw], {"ufw_ssh_sources": [Secret("not-a-net-77")]}, "t")
    assert "not-a-net-77" not in str(raised.value) and "***" in str(raised.value)


def test_cron_is_installed_before_its_file_modes_are_tightened() -> None:
    """A later role installing cron would bring /etc/crontab 0644 after the modes step ran, and
    the next run would change it again: hardening installs cron itself, ahead of that step."""
    labels = [step.label for step in role_steps(make_host())]
    packages = next(index for index, label in enumerate(labels) if label.startswith("packages"))
    modes = next(index for index, label in enumerate(labels) if "modes of account files" in label)
    assert "cron" in wanted_packages(merged(), BOOKWORM)
    assert packages < modes
    assert any(label.startswith("cron daemon") for label in labels)
    assert "cron" not in wanted_packages(merged(hardening_cron_enabled=False), BOOKWORM)


UPDATES_LABEL = "pending security updates installed"


def test_a_fresh_host_gets_its_security_updates_once_after_the_lists_are_refreshed() -> None:
    step = step_named(make_host(), UPDATES_LABEL)

    pending = step.decide(Probed("pending\n"))
    done = step.decide(Probed("installed\n"))

    assert pending.action is not None and done.action is None
    assert pending.action.index("apt-get -q -y") < pending.action.index("update") < \
        pending.action.index("&& unattended-upgrade &&") < \
        pending.action.index("> /var/lib/provisioner/security-updates-installed")
    assert step.changes_facts  # openssh-server may be among the updates


def test_security_updates_come_after_the_configuration_that_limits_them_to_security() -> None:
    labels = [step.label for step in role_steps(make_host())]

    assert labels.index("unattended-upgrades 50unattended-upgrades [controls §1.9]") < \
        next(i for i, label in enumerate(labels) if UPDATES_LABEL in label)


@pytest.mark.parametrize("switch", ["hardening_security_updates_first_run",
                                    "hardening_unattended_upgrades_enabled"])
def test_no_security_updates_step_when_switched_off(switch: str) -> None:
    labels = [step.label for step in role_steps(make_host(**{switch: False}))]

    assert not any(UPDATES_LABEL in label for label in labels)


def test_security_updates_run_before_any_step_arms_the_ssh_safeguard() -> None:
    # unattended-upgrade on a fresh host may outlast the safeguard's revert timer (120 s).
    steps = role_steps(make_host())
    updates = next(i for i, step in enumerate(steps) if UPDATES_LABEL in step.label)

    assert all(step.safeguard is None for step in steps[:updates])
    assert any(step.safeguard is not None for step in steps[updates:])


def test_chkrootkit_comes_without_its_recommends_and_with_its_timer() -> None:
    host = make_host()
    package = step_named(host, "rootkit scanner chkrootkit")

    plan = package.decide(Probed("now 1700000000\n"))

    assert plan.action is not None
    assert "-o APT::Install-Recommends=false install chkrootkit" in plan.action
    assert step_named(host, "chkrootkit daily scan timer").probe


def test_no_rootkit_scanner_when_switched_off() -> None:
    labels = [step.label for step in role_steps(make_host(hardening_rootkit_scanner_enabled=False))]

    assert not any("chkrootkit" in label for label in labels)


def test_a_third_party_repository_listed_first_is_not_taken_for_the_main_mirror() -> None:
    entries = parse_apt_entries([
        "deb [arch=amd64] https://download.docker.com/linux/debian bookworm stable",
        "deb http://mirror.example.org/debian bookworm main",
        "deb http://mirror.example.org/debian bookworm-updates main"])

    mirror = main_mirror(entries, "bookworm")

    assert mirror is not None and mirror.uris == ["http://mirror.example.org/debian"]


def test_security_updates_are_recorded_only_when_apt_has_the_security_archive() -> None:
    plan = step_named(make_host(), UPDATES_LABEL).decide(Probed("pending\n"))

    assert plan.action is not None
    assert plan.action.index("grep -q 'n=bookworm-security[,]'") < \
        plan.action.index("unattended-upgrade &&") < plan.action.index("security-updates-installed")
    assert "exit 1" in plan.action
