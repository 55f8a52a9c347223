"""What a sandbox base image contains: a lean Debian like a fresh cloud VM, with its weak defaults.

Cloud images ship password logins allowed, a sudo-capable default user and no firewall; the
project's roles exist to fix exactly that, so the sandbox reproduces it instead of pre-hardening.
Everything here is data plus one function that fingerprints it, so a changed recipe rebuilds.
"""

import hashlib
import json

PACKAGES = (
    "systemd", "systemd-sysv", "dbus", "openssh-server", "python3", "sudo", "iproute2",
    "iputils-ping", "ca-certificates", "procps", "kmod", "apt-utils", "less",
)
"""Installed by debootstrap on top of minbase; cron and editors are left for roles to install."""

ADMIN_USER = "admin"
ADMIN_PASSWORD = "sandbox-admin"
ROOT_PASSWORD = "sandbox-root"
"""Weak, well-known passwords: machines are only reachable from this host, and hardening removes
password logins, which the integration tests then prove."""

RECIPE_VERSION = 1
"""Bump to force a rebuild when something outside the data below changes the image."""

SSHD_CLOUD_DEFAULTS = """\
# Weak defaults as on many fresh cloud VMs (sandbox image); hardening is expected to replace them.
PermitRootLogin yes
PasswordAuthentication yes
"""

SUDOERS_ADMIN = f"""\
# Passwordless sudo for the default user, as cloud images set it up.
{ADMIN_USER} ALL=(ALL) NOPASSWD:ALL
"""

CGROUPS_SCRIPT = """\
#!/bin/sh
# Sandbox emulation detail, not needed on a real VM: systemd-nspawn mounts the cgroup v1
# controllers read-only, and container runtimes (Docker's runc) must create cgroups in them.
# Each read-only controller hierarchy is unmounted and mounted again read-write.
set -u
mounts=$(cat /proc/self/mounts)
printf '%s\\n' "$mounts" | while read -r _device path fstype options _rest; do
    [ "$fstype" = cgroup ] || continue
    case "$path" in */systemd | */unified) continue ;; esac
    case ",$options," in *,ro,*) ;; *) continue ;; esac
    controllers=""
    for option in $(printf '%s' "$options" | tr ',' ' '); do
        case "$option" in
            rw | ro | nosuid | nodev | noexec | relatime) ;;
            *) controllers="$controllers,$option" ;;
        esac
    done
    umount -l "$path"
    mount -t cgroup -o "rw,nosuid,nodev,noexec$controllers" cgroup "$path"
done
exit 0
"""

CGROUPS_UNIT = """\
[Unit]
Description=Make cgroup v1 controllers writable for container runtimes (sandbox only)
ConditionVirtualization=container
Before=docker.service containerd.service

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/local/sbin/sandbox-cgroups-rw

[Install]
WantedBy=multi-user.target
"""

IMAGE_FILES: dict[str, tuple[str, int]] = {
    "etc/ssh/sshd_config.d/50-cloud-init.conf": (SSHD_CLOUD_DEFAULTS, 0o644),
    f"etc/sudoers.d/90-{ADMIN_USER}": (SUDOERS_ADMIN, 0o440),
    "usr/local/sbin/sandbox-cgroups-rw": (CGROUPS_SCRIPT, 0o755),
    "etc/systemd/system/sandbox-cgroups.service": (CGROUPS_UNIT, 0o644),
    "etc/hostname": ("debian\n", 0o644),
    "etc/machine-id": ("", 0o444),
}
"""Files written into every image, relative to its root, with their modes."""

IMAGE_SYMLINKS = {
    "etc/systemd/system/multi-user.target.wants/sandbox-cgroups.service":
        "/etc/systemd/system/sandbox-cgroups.service",
    "var/lib/dbus/machine-id": "/etc/machine-id",
}
"""Symlinks: the first enables the unit as `systemctl enable` would; D-Bus shares the machine-id."""

REMOVED_GLOBS = (
    "etc/apt/sources.list",
    "etc/ssh/ssh_host_*",
    "var/lib/dbus/machine-id",
    "var/cache/apt/archives/*.deb",
    "var/cache/apt/*.bin",
    "var/lib/apt/lists/*_*",
)
"""Left by debootstrap but wrong for an image: host keys and machine-id must differ per machine,
and stale package lists would fail in confusing ways later instead of plainly needing an update."""


def recipe_stamp(mirror: str, suite: str) -> str:
    """A fingerprint of everything that shapes an image; a cached image with another is rebuilt."""
    recipe = {
        "version": RECIPE_VERSION,
        "mirror": mirror,
        "suite": suite,
        "packages": PACKAGES,
        "files": IMAGE_FILES,
        "symlinks": IMAGE_SYMLINKS,
        "removed": REMOVED_GLOBS,
        "users": [ADMIN_USER, ADMIN_PASSWORD, ROOT_PASSWORD],
    }
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]
