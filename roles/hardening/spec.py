"""What a hardened host guarantees, proven from the outside with testinfra (run by `invoke verify`).

Expectations come from the host's own variables (``role_vars``), never from the defaults, so a
host configured differently is held to its own settings. sshd is judged by ``sshd -T`` (the
effective configuration), never by the file's text.
"""

from __future__ import annotations

from typing import Any

import pytest

from provisioner.facts import parse_openssh_version
from roles.hardening.ssh import crypto_for

Host = Any
Vars = dict[str, Any]


def skip_unless(role_vars: Vars, *switches: str, why: str = "") -> None:
    """Skip the test when a switch of the role for what it proves is off."""
    off = [switch for switch in switches if not role_vars[switch]]
    if off:
        pytest.skip(why or f"{off[0]} is false")


@pytest.fixture(scope="module")
def sshd(host: Host) -> dict[str, str]:
    """sshd's effective settings, keyword -> value (repeated keywords joined by newlines)."""
    settings: dict[str, str] = {}
    for line in host.check_output("/usr/sbin/sshd -T").splitlines():
        key, _, value = line.partition(" ")
        settings[key] = f"{settings[key]}\n{value}" if key in settings else value
    return settings


@pytest.fixture(scope="module")
def in_container(host: Host) -> bool:
    return bool(host.run("systemd-detect-virt --container").rc == 0)


@pytest.fixture(scope="module")
def openssh_version(host: Host) -> tuple[int, int] | None:
    return parse_openssh_version(host.check_output("dpkg-query -W -f '${Version}' openssh-server"))


def test_root_login_is_refused(sshd: dict[str, str]) -> None:
    assert sshd["permitrootlogin"] == "no"


@pytest.mark.parametrize(("option", "expected"), [
    ("passwordauthentication", "no"),
    ("kbdinteractiveauthentication", "no"),
    ("permitemptypasswords", "no"),
    ("pubkeyauthentication", "yes"),
    ("authenticationmethods", "publickey"),
    ("hostbasedauthentication", "no"),
    ("ignorerhosts", "yes"),
    ("allowagentforwarding", "no"),
    ("allowtcpforwarding", "no"),
    ("x11forwarding", "no"),
    ("permittunnel", "no"),
    ("gatewayports", "no"),
    ("permituserenvironment", "no"),
    ("usedns", "no"),
    ("loglevel", "VERBOSE"),
    ("strictmodes", "yes"),
    ("tcpkeepalive", "no"),
    ("compression", "no"),
])
def test_sshd_refuses_weak_settings(sshd: dict[str, str], role_vars: Vars, option: str,
                                    expected: str) -> None:
    overridden = [line for line in role_vars["hardening_sshd_extra_options"]
                  if line.split()[:1] and line.split()[0].lower() == option]
    if overridden:
        pytest.skip(f"{option} is set by hardening_sshd_extra_options")
    assert sshd[option] == expected


@pytest.mark.parametrize(("option", "variable"), [
    ("port", "hardening_ssh_port"),
    ("maxauthtries", "hardening_ssh_max_auth_tries"),
    ("maxsessions", "hardening_ssh_max_sessions"),
    ("logingracetime", "hardening_ssh_login_grace_time"),
    ("clientaliveinterval", "hardening_ssh_client_alive_interval"),
    ("clientalivecountmax", "hardening_ssh_client_alive_count_max"),
    ("maxstartups", "hardening_ssh_max_startups"),
    ("allowgroups", "hardening_ssh_allow_group"),
])
def test_sshd_limits_follow_the_inventory(sshd: dict[str, str], role_vars: Vars, option: str,
                                          variable: str) -> None:
    assert sshd[option] == str(role_vars[variable])


@pytest.mark.parametrize(("option", "variable", "attribute"), [
    ("ciphers", "hardening_ssh_ciphers", "ciphers"),
    ("macs", "hardening_ssh_macs", "macs"),
    ("kexalgorithms", "hardening_ssh_kex_algorithms", "kex"),
])
def test_crypto_is_exactly_the_list_for_this_openssh(
        sshd: dict[str, str], role_vars: Vars, openssh_version: tuple[int, int] | None,
        option: str, variable: str, attribute: str) -> None:
    expected = role_vars[variable] or list(getattr(crypto_for(openssh_version), attribute))
    assert sshd[option] == ",".join(expected)


def test_post_quantum_key_exchange_is_kept_on_new_openssh(
        sshd: dict[str, str], role_vars: Vars, openssh_version: tuple[int, int] | None) -> None:
    if not openssh_version or openssh_version < (9, 9) or role_vars["hardening_ssh_kex_algorithms"]:
        pytest.skip("OpenSSH before 9.9 has no ML-KEM, or the inventory pins its own list")
    assert sshd["kexalgorithms"].split(",")[0] == "mlkem768x25519-sha256"


@pytest.mark.parametrize("weak", ["cbc", "hmac-sha1", "hmac-md5", "diffie-hellman-group1",
                                  "diffie-hellman-group14-sha1", "arcfour"])
def test_no_weak_algorithm_is_offered(sshd: dict[str, str], weak: str) -> None:
    offered = ",".join([sshd["ciphers"], sshd["macs"], sshd["kexalgorithms"]])
    assert weak not in offered


def test_the_server_offers_only_public_key_authentication(host: Host, role_vars: Vars) -> None:
    """A client that will not use a key is refused, and the server names only "publickey"."""
    # ssh's own exit code 255 would read as a transport failure to testinfra, hence the echo.
    result = host.run(
        "ssh -o BatchMode=yes -o PubkeyAuthentication=no -o StrictHostKeyChecking=no "
        "-o UserKnownHostsFile=/dev/null -o ConnectTimeout=10 -p %s %s@%s true; echo \"exit $?\"",
        str(role_vars["hardening_ssh_port"]), role_vars["hardening_admin_user"],
        role_vars["_host_address"])
    assert result.stdout.strip() == "exit 255"
    assert "Permission denied (publickey)" in result.stderr


def test_sshd_config_ignores_drop_ins_and_is_private(host: Host) -> None:
    config = host.file("/etc/ssh/sshd_config")
    assert (config.user, config.group, config.mode) == ("root", "root", 0o600)
    assert not any(line.strip().lower().startswith("include")
                   for line in config.content_string.splitlines())


def test_weak_moduli_are_gone(host: Host, role_vars: Vars) -> None:
    minimum = int(role_vars["hardening_ssh_moduli_min_bits"])
    weak = host.check_output(
        "awk -v min=%s '/^[0-9]/ && NF >= 7 && $5 + 1 < min' /etc/ssh/moduli | wc -l",
        str(minimum))
    assert weak == "0"


def test_ssh_socket_cannot_start_sshd(host: Host) -> None:
    release = host.system_info.release.split(".")[0]
    if host.system_info.distribution != "debian" or int(release) < 12:
        pytest.skip("ssh.socket is masked on Debian 12 and later only")
    assert host.run("systemctl is-enabled ssh.socket").stdout.strip() == "masked"


def test_legal_banner_is_shown_before_login(host: Host, role_vars: Vars,
                                            sshd: dict[str, str]) -> None:
    skip_unless(role_vars, "hardening_banners_enabled")
    assert sshd["banner"] == "/etc/issue.net"
    for path in ("/etc/issue", "/etc/issue.net"):
        assert host.file(path).content_string.strip() == role_vars["hardening_legal_notice"].strip()


def test_admin_logs_in_with_exactly_the_inventory_keys(host: Host, role_vars: Vars) -> None:
    user = host.user(role_vars["hardening_admin_user"])
    assert user.exists and user.shell == role_vars["hardening_admin_shell"]
    assert role_vars["hardening_ssh_allow_group"] in user.groups
    assert host.file(user.home).mode & 0o027 == 0
    keys = host.file(f"{user.home}/.ssh/authorized_keys")
    assert (keys.user, keys.mode) == (user.name, 0o600)
    assert keys.content_string.split("\n")[:-1] == [
        key.strip() for key in role_vars["hardening_admin_authorized_keys"]]


def test_admin_can_sudo_without_a_password(host: Host, role_vars: Vars) -> None:
    skip_unless(role_vars, "hardening_admin_sudo_nopasswd",
                why="the inventory asks sudo to require a password")
    result = host.run("sudo -n -u %s sudo -n true", role_vars["hardening_admin_user"])
    assert result.rc == 0, result.stderr


def test_admin_password_never_expires(host: Host, role_vars: Vars) -> None:
    ageing = host.check_output("chage -l %s", role_vars["hardening_admin_user"])
    assert "Password expires\t\t\t\t\t: never" in ageing


def expected_sysctls(role_vars: Vars, in_container: bool) -> dict[str, str]:
    forward = "1" if role_vars["hardening_ip_forward"] else "0"
    values = {key: forward for key in ("net.ipv4.ip_forward", "net.ipv4.conf.all.forwarding",
                                       "net.ipv6.conf.all.forwarding")}
    for variable in ("hardening_sysctl_settings", "hardening_sysctl_overrides"):
        values.update({key: str(value) for key, value in role_vars[variable].items()})
    return {key: value for key, value in values.items()
            if not in_container or key.startswith("net.")}


def test_sysctl_file_holds_every_setting(host: Host, role_vars: Vars, in_container: bool) -> None:
    skip_unless(role_vars, "hardening_sysctl_enabled")
    content = host.file("/etc/sysctl.d/90-provisioner-hardening.conf").content_string
    expected = expected_sysctls(role_vars, in_container)
    wanted = [f"{key} = {value}" for key, value in expected.items()]
    missing = [line for line in wanted if line not in content.splitlines()]
    assert missing == []


def test_running_kernel_uses_the_settings(host: Host, role_vars: Vars, in_container: bool) -> None:
    skip_unless(role_vars, "hardening_sysctl_enabled")
    wrong = {}
    for key, value in expected_sysctls(role_vars, in_container).items():
        path = "/proc/sys/" + key.replace(".", "/")
        if host.file(path).exists and host.file(path).content_string.split() != value.split():
            wrong[key] = host.file(path).content_string.strip()
    assert wrong == {}


def test_ip_forwarding_follows_the_inventory(host: Host, role_vars: Vars) -> None:
    expected = "1" if role_vars["hardening_ip_forward"] else "0"
    assert host.file("/proc/sys/net/ipv4/ip_forward").content_string.strip() == expected


def test_login_defs_has_the_inventory_values(host: Host, role_vars: Vars) -> None:
    skip_unless(role_vars, "hardening_login_defs_enabled")
    wanted = {key: str(value) for key, value in role_vars["hardening_login_defs"].items()}
    if role_vars["hardening_umask_enabled"]:
        wanted["UMASK"] = str(role_vars["hardening_umask"])
    found = {}
    for line in host.file("/etc/login.defs").content_string.splitlines():
        fields = line.split()
        if len(fields) >= 2 and fields[0] in wanted:
            found[fields[0]] = fields[1]
    assert found == wanted


def test_login_shells_get_the_umask_and_no_core_dumps(host: Host, role_vars: Vars) -> None:
    shell = host.check_output("sudo -n -u %s bash -lc 'umask; ulimit -c'",
                              role_vars["hardening_admin_user"]).split()
    if role_vars["hardening_umask_enabled"]:
        assert shell[0] == str(role_vars["hardening_umask"]).zfill(4)
    if role_vars["hardening_core_dumps_disabled_enabled"]:
        assert shell[1] == "0"


def test_systemd_keeps_no_core_dumps(host: Host, role_vars: Vars) -> None:
    skip_unless(role_vars, "hardening_core_dumps_disabled_enabled")
    config = host.check_output("systemd-analyze cat-config systemd/coredump.conf")
    assert "Storage=none" in config and "ProcessSizeMax=0" in config


def test_password_changes_are_checked_for_quality(host: Host, role_vars: Vars) -> None:
    skip_unless(role_vars, "hardening_pwquality_enabled")
    assert "pam_pwquality.so" in host.file("/etc/pam.d/common-password").content_string


#: Where modprobe reads its configuration, in kmod's order of precedence: a file name found in an
#: earlier directory hides the same name in the later ones.
MODPROBE_DIRECTORIES = ("/etc/modprobe.d", "/run/modprobe.d", "/usr/local/lib/modprobe.d",
                        "/lib/modprobe.d", "/usr/lib/modprobe.d")


def modprobe_install_commands(host: Host) -> dict[str, str]:
    """Module name -> the command modprobe runs instead of loading it, read from the files.

    Read as kmod reads them (file names sorted across the directories, the first ``install`` line
    for a module wins, ``-`` and ``_`` alike) rather than asked of ``modprobe -n``: a minimal host
    has no kmod, and the role does not install it just to be checked.
    """
    files: dict[str, str] = {}
    for directory in MODPROBE_DIRECTORIES:
        if host.file(directory).is_directory:
            for name in host.file(directory).listdir():
                if name.endswith(".conf"):
                    files.setdefault(name, f"{directory}/{name}")
    commands: dict[str, str] = {}
    for name in sorted(files):
        for line in host.file(files[name]).content_string.splitlines():
            words = line.split()
            if len(words) >= 3 and words[0] == "install":
                commands.setdefault(words[1].replace("-", "_"), " ".join(words[2:]))
    return commands


def modules_to_block(host: Host, role_vars: Vars) -> list[str]:
    """The modules the role must have blocked on this host (filesystems in use are spared)."""
    mounted = {line.split()[2] for line in host.file("/proc/mounts").content_string.splitlines()}
    efi = host.file("/sys/firmware/efi").is_directory
    modules = [name for name in role_vars["hardening_disabled_filesystems"]
               if name not in mounted and not (name == "vfat" and efi)]
    return [*modules, *role_vars["hardening_disabled_network_protocols"],
            *role_vars["hardening_disabled_drivers"]]


def test_unused_kernel_modules_cannot_load(host: Host, role_vars: Vars) -> None:
    skip_unless(role_vars, "hardening_kernel_modules_enabled")
    commands = modprobe_install_commands(host)
    not_blocked = [name for name in modules_to_block(host, role_vars)
                   if commands.get(name.replace("-", "_")) not in ("/bin/true", "/bin/false")]
    assert not_blocked == []


def test_modprobe_itself_agrees_where_it_is_installed(host: Host, role_vars: Vars) -> None:
    skip_unless(role_vars, "hardening_kernel_modules_enabled")
    if not host.exists("modprobe"):
        pytest.skip("no modprobe here (kmod not installed): nothing can load a module by name")
    not_blocked = [name for name in modules_to_block(host, role_vars)
                   if "/bin/true" not in host.run("modprobe -n -v %s", name).stdout]
    assert not_blocked == []


@pytest.mark.parametrize(("path", "owner", "group", "ceiling"), [
    ("/etc/shadow", "root", "shadow", 0o640),
    ("/etc/gshadow", "root", "shadow", 0o640),
    ("/etc/passwd", "root", "root", 0o644),
    ("/etc/group", "root", "root", 0o644),
    ("/etc/crontab", "root", "root", 0o600),
    ("/etc/cron.d", "root", "root", 0o700),
    ("/etc/cron.daily", "root", "root", 0o700),
])
def test_account_and_cron_files_are_not_exposed(host: Host, role_vars: Vars, path: str,
                                                owner: str, group: str, ceiling: int) -> None:
    skip_unless(role_vars, "hardening_file_permissions_enabled")
    target = host.file(path)
    if not target.exists:
        pytest.skip(f"{path} does not exist on this host")
    assert (target.user, target.group) == (owner, group)
    assert target.mode & ~ceiling == 0, f"{path} has mode {target.mode:04o}"


def test_nothing_runs_from_shared_memory(host: Host, role_vars: Vars) -> None:
    skip_unless(role_vars, "hardening_shm_noexec_enabled",
                why="/dev/shm is left as the host has it")
    options = set(host.mount_point("/dev/shm").options)
    assert {"nosuid", "nodev", "noexec"} <= options, options


def test_security_updates_come_from_the_security_archive(host: Host, role_vars: Vars) -> None:
    skip_unless(role_vars, "hardening_security_repository_enabled",
                why="the security archive is not managed")
    policy = host.check_output("apt-cache policy")
    assert f"{host.system_info.codename}-security" in policy


def test_security_updates_install_themselves(host: Host, role_vars: Vars) -> None:
    skip_unless(role_vars, "hardening_unattended_upgrades_enabled")
    assert host.package("unattended-upgrades").is_installed
    config = host.check_output("apt-config dump")
    assert 'APT::Periodic::Unattended-Upgrade "1";' in config
    assert 'APT::Periodic::Update-Package-Lists "1";' in config
    origins = [line for line in config.splitlines()
               if line.startswith("Unattended-Upgrade::Origins-Pattern::")]
    assert any("-security" in line for line in origins)


def test_the_first_provision_installed_the_pending_security_updates(host: Host,
                                                                    role_vars: Vars) -> None:
    skip_unless(role_vars, "hardening_unattended_upgrades_enabled",
                "hardening_security_updates_first_run", why="not installed by the first run")
    stamp = host.file("/var/lib/provisioner/security-updates-installed")
    assert stamp.is_file and stamp.content_string.strip(), "no security updates run recorded"


def test_a_rootkit_scanner_runs_daily(host: Host, role_vars: Vars) -> None:
    skip_unless(role_vars, "hardening_rootkit_scanner_enabled", why="no rootkit scanner asked for")
    assert host.package("chkrootkit").is_installed
    assert host.service("chkrootkit.timer").is_enabled


def test_journal_survives_reboots(host: Host, role_vars: Vars) -> None:
    skip_unless(role_vars, "hardening_journald_persistent_enabled")
    machine_id = host.file("/etc/machine-id").content_string.strip()
    assert host.file(f"/var/log/journal/{machine_id}").is_directory


def test_clock_is_kept_in_sync(host: Host, role_vars: Vars, in_container: bool) -> None:
    skip_unless(role_vars, "hardening_time_sync_enabled")
    service = host.service(str(role_vars["hardening_time_sync_service"]))
    assert service.is_enabled
    if not in_container:
        assert service.is_running


def test_processes_are_accounted(host: Host, role_vars: Vars) -> None:
    skip_unless(role_vars, "hardening_process_accounting_enabled")
    assert host.file("/var/log/account/pacct").exists


def test_kernel_auditing_and_apparmor_run_outside_containers(host: Host, role_vars: Vars,
                                                           in_container: bool) -> None:
    if in_container:
        pytest.skip("auditd and AppArmor need the host's kernel")
    if role_vars["hardening_auditd_enabled"]:
        assert host.service("auditd").is_running
    if role_vars["hardening_apparmor_enabled"]:
        assert host.service("apparmor").is_enabled


def test_cron_runs(host: Host, role_vars: Vars) -> None:
    skip_unless(role_vars, "hardening_cron_enabled", why="cron is left as the host has it")
    assert host.service("cron").is_enabled
    assert host.service("cron").is_running
