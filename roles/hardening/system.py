"""OS hardening: banners, sysctls, login defaults, PAM, shells, core dumps, modules, file modes.

Each group of steps is gated by its ``hardening_<feature>_enabled`` switch; the values come from
defaults.yml (controls.md §1) and facts decide what must be spared on this host (EFI, mounts).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from provisioner.facts import Facts
from provisioner.host import Host
from provisioner.ops.access import Access, ensure_access
from provisioner.ops.backups import safeguard_save
from provisioner.ops.checks import ensure_command_result
from provisioner.ops.files import ensure_directory, ensure_file, ensure_template
from provisioner.ops.lines import ensure_keyed_lines, ensure_line
from provisioner.ops.sysctl import ensure_sysctl, plan_runtime, probe_runtime
from provisioner.step import Plan, Probed, Step
from roles.hardening.ssh import access_safeguard

SYSCTL_FILE = "/etc/sysctl.d/90-provisioner-hardening.conf"
FORWARDING_KEYS = ("net.ipv4.ip_forward", "net.ipv4.conf.all.forwarding",
                   "net.ipv6.conf.all.forwarding")
PAM_PROFILES = ("provisioner-faillock", "provisioner-faillock-preauth")


def banner_steps(host: Host) -> Iterator[Step]:
    """Legal notice before login on the console and over SSH (Lynis BANN-7126, BANN-7130)."""
    if not host.vars["hardening_banners_enabled"]:
        return
    for path in ("/etc/issue", "/etc/issue.net"):
        yield ensure_template(host, path, "etc/issue.j2", label=f"banner {path} [controls §12]")


def sysctl_settings(variables: Mapping[str, Any], facts: Facts) -> dict[str, str | int]:
    """Forwarding first (writing it resets other per-interface keys), then the rest, overrides last.

    In a container only the network keys are the container's own (its network namespace); the
    kernel.*, fs.* and vm.* values belong to the host kernel it shares with its neighbours, so
    they are left to the host even where the container could write them.
    """
    forward = 1 if variables["hardening_ip_forward"] else 0
    settings: dict[str, str | int] = {key: forward for key in FORWARDING_KEYS}
    settings.update(variables["hardening_sysctl_settings"])
    settings.update(variables["hardening_sysctl_overrides"])
    if facts.is_container:
        return {key: value for key, value in settings.items() if key.startswith("net.")}
    return settings


def sysctl_steps(host: Host) -> Iterator[Step]:
    """The drop-in, then forwarding on its own, then every running value (§1.1, §13).

    Writing a forwarding key makes the kernel reset accept_redirects and friends, so a single
    ``sysctl -w`` of only the differing keys leaves them wrong until the next run. Setting the
    forwarding keys in an earlier step makes the engine re-probe before the main runtime step.
    """
    if not host.vars["hardening_sysctl_enabled"]:
        return
    settings = sysctl_settings(host.vars, host.facts)
    file_step, runtime_step = ensure_sysctl(
        host, SYSCTL_FILE, settings, label=f"sysctl file {SYSCTL_FILE} [controls §1.1, §13]",
        header="Managed by provisioner (hardening role, controls.md §1.1)")
    forwarding = {key: settings[key] for key in FORWARDING_KEYS}

    def decide(probed: Probed) -> Plan:
        return plan_runtime(probed.output, forwarding)

    yield file_step
    yield Step("sysctl forwarding values [controls §1.1, §13]",
               probe_runtime(list(forwarding)), decide)
    yield runtime_step


def login_defs_lines(variables: Mapping[str, Any]) -> dict[str, str]:
    """login.defs key -> full line, UMASK included when the umask feature is on."""
    values: dict[str, Any] = dict(variables["hardening_login_defs"])
    if variables["hardening_umask_enabled"]:
        values["UMASK"] = variables["hardening_umask"]
    return {key: f"{key}\t{value}" for key, value in values.items()}


def login_steps(host: Host) -> Iterator[Step]:
    """login.defs values and the umask for login shells (§1.2, Lynis AUTH-9230/9286/9328)."""
    if host.vars["hardening_login_defs_enabled"]:
        yield ensure_keyed_lines(host, "/etc/login.defs", login_defs_lines(host.vars),
                                 label="lines in /etc/login.defs [controls §1.2]")
    if host.vars["hardening_umask_enabled"]:
        yield ensure_template(host, "/etc/profile.d/provisioner-umask.sh",
                              "etc/profile.d/provisioner-umask.sh.j2",
                              label="umask for login shells [controls §1.2]")
    if host.vars["hardening_shell_timeout_enabled"]:
        yield ensure_template(host, "/etc/profile.d/provisioner-timeout.sh",
                              "etc/profile.d/provisioner-timeout.sh.j2",
                              label="idle shell timeout [controls §12 SHLL-6220]")


def pam_steps(host: Host) -> Iterator[Step]:
    """Password quality always safe; faillock only when switched on (§1.3)."""
    if host.vars["hardening_pwquality_enabled"]:
        yield ensure_directory(host, "/etc/security/pwquality.conf.d")
        yield ensure_template(host, "/etc/security/pwquality.conf.d/90-provisioner.conf",
                              "etc/security/pwquality.conf.d/90-provisioner.conf.j2",
                              label="password quality rules [controls §1.3]")
    if host.vars["hardening_faillock_enabled"]:
        yield from _faillock_steps(host)


#: The PAM stacks pam-auth-update rewrites; saved before it runs so the safeguard can restore
#: them (a faillock stack that refuses the login user would otherwise lock the controller out).
PAM_STACKS = tuple(f"/etc/pam.d/common-{name}" for name in
                   ("auth", "account", "password", "session", "session-noninteractive"))


def _faillock_steps(host: Host) -> Iterator[Step]:
    """faillock.conf, two pam-auth-update profiles, and the profiles enabled (dev-sec's way),
    under the access safeguard: a new login must work after the stack changed."""
    safeguard = access_safeguard(host.vars)
    yield ensure_template(host, "/etc/security/faillock.conf", "etc/security/faillock.conf.j2",
                          safeguard=safeguard, label="faillock settings [controls §1.3]")
    for name in PAM_PROFILES:
        yield ensure_template(host, f"/usr/share/pam-configs/{name}",
                              f"usr/share/pam-configs/{name}.j2", safeguard=safeguard,
                              label=f"pam-auth-update profile {name} [controls §1.3]")
    probe = ("a=$(grep -c pam_faillock.so /etc/pam.d/common-auth); "
             "b=$(grep -c pam_faillock.so /etc/pam.d/common-account); "
             "if [ \"$a\" -ge 2 ] && [ \"$b\" -ge 1 ]; then echo enabled; "
             "else echo \"auth $a, account $b\"; fi")
    saves = "".join(safeguard_save(safeguard.name, path) for path in PAM_STACKS)
    action = (saves + "DEBIAN_FRONTEND=noninteractive pam-auth-update --enable "
              + " ".join(PAM_PROFILES))
    yield ensure_command_result(host, "pam_faillock in the PAM stack [controls §1.3]", probe,
                                wanted="enabled", action=action, reason="enabled",
                                safeguard=safeguard)


def core_dump_steps(host: Host) -> Iterator[Step]:
    """No core dumps anywhere: limits, systemd-coredump, login shells (§1.5, Lynis KRNL-5820)."""
    if not host.vars["hardening_core_dumps_disabled_enabled"]:
        return
    yield ensure_template(host, "/etc/security/limits.d/90-provisioner-coredumps.conf",
                          "etc/security/limits.d/90-provisioner-coredumps.conf.j2",
                          label="core dump limits [controls §1.5]")
    yield ensure_directory(host, "/etc/systemd/coredump.conf.d")
    yield ensure_template(host, "/etc/systemd/coredump.conf.d/90-provisioner.conf",
                          "etc/systemd/coredump.conf.d/90-provisioner.conf.j2",
                          label="systemd-coredump off [controls §1.5]")
    yield ensure_template(host, "/etc/profile.d/provisioner-coredumps.sh",
                          "etc/profile.d/provisioner-coredumps.sh.j2",
                          label="no core dumps from login shells [controls §1.5]")


def blocked_filesystems(variables: Mapping[str, Any], facts: Facts) -> list[str]:
    """Filesystems to block, sparing vfat on EFI hosts and every type mounted now (§1.6)."""
    mounted = set(facts.mounts.values())
    return [name for name in variables["hardening_disabled_filesystems"]
            if name not in mounted and not (name == "vfat" and facts.efi)]


def module_steps(host: Host) -> Iterator[Step]:
    if host.vars["hardening_kernel_modules_enabled"]:
        filesystems = blocked_filesystems(host.vars, host.facts)
        content = host.render("etc/modprobe.d/provisioner-hardening.conf.j2",
                              hardening_disabled_filesystems=filesystems)
        yield ensure_file(host, "/etc/modprobe.d/provisioner-hardening.conf", content,
                          label="unused kernel modules blocked [controls §1.6, §12]")


#: /dev/shm as CIS Debian Linux 12 §1.1.2.2 wants it: no devices, setuid or executables.
SHM_OPTIONS = "nosuid,nodev,noexec"
SHM_FSTAB_LINE = f"tmpfs /dev/shm tmpfs defaults,{SHM_OPTIONS} 0 0"
#: Prints SHM_OPTIONS when /dev/shm (its last mount) has them all, else its options; builtins.
SHM_PROBE = ("o=; while read -r _ m _ opts _; do [ \"$m\" = /dev/shm ] && o=$opts; "
             "done < /proc/mounts; all=yes; for f in nosuid nodev noexec; do "
             "case \",$o,\" in *,$f,*) ;; *) all=no ;; esac; done; "
             "if [ -z \"$o\" ]; then echo 'not mounted'; "
             f"elif [ $all = yes ]; then echo {SHM_OPTIONS}; else echo \"$o\"; fi")


def shm_steps(host: Host) -> Iterator[Step]:
    """/dev/shm without exec, setuid or devices, at boot (fstab) and now (controls §12,
    Lynis FILE-6374, CIS Debian Linux 12 §1.1.2.2): a payload dropped in shared memory cannot be
    run from there."""
    if not host.vars["hardening_shm_noexec_enabled"]:
        return
    yield ensure_line(host, "/etc/fstab", SHM_FSTAB_LINE, pattern=r"^[^#\s]\S*\s+/dev/shm\s",
                      label="/dev/shm in /etc/fstab nosuid,nodev,noexec [controls §12]")
    yield ensure_command_result(
        host, "/dev/shm mounted nosuid,nodev,noexec [controls §12 FILE-6374]", SHM_PROBE,
        wanted=SHM_OPTIONS, reason=f"remounted {SHM_OPTIONS}",
        action=f"mount -o remount,{SHM_OPTIONS} /dev/shm || mount /dev/shm")


def permission_steps(host: Host) -> Iterator[Step]:
    """Account databases and cron readable only by whom they must be (§1.4)."""
    if not host.vars["hardening_file_permissions_enabled"]:
        return
    wanted = [Access(path, "root", "shadow", 0o640)
              for path in ("/etc/shadow", "/etc/shadow-", "/etc/gshadow", "/etc/gshadow-")]
    wanted += [Access(path, "root", "root", 0o644)
               for path in ("/etc/passwd", "/etc/passwd-", "/etc/group", "/etc/group-")]
    wanted.append(Access("/etc/crontab", "root", "root", 0o600, remove_only=True))
    wanted += [Access(f"/etc/cron.{name}", "root", "root", 0o700, remove_only=True)
               for name in ("hourly", "daily", "weekly", "monthly", "d")]
    yield ensure_access(host, wanted, label="modes of account files and cron [controls §1.4]")
