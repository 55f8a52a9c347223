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
"""The standard variant: installed by debootstrap on top of minbase; cron and editors are left
for roles to install."""

MINIMAL_PACKAGES = ("systemd-sysv", "libpam-systemd", "dbus", "openssh-server", "sudo")
"""The minimal variant: only what boots with systemd and takes SSH logins that may use sudo.

Debian's genericcloud and nocloud images add to a debootstrap base sudo, libpam-systemd,
openssh-server, networking (netplan, systemd-resolved), time sync, unattended-upgrades, and a
handful of `important` tools (iproute2, iptables, iputils-ping, less, nano, vim-tiny); kmod
comes with their kernel. A sandbox machine has no kernel of its own and is networked from the
host, so this variant keeps only the first three and systemd itself (dbus spelled out because
debootstrap does not resolve libpam-systemd's virtual dbus-system-bus dependency). It has no
kmod (so no /etc/modprobe.d), no iproute2, no python3 and no ca-certificates: the smallest
Debian a user may hand the tool, where a missing directory or command shows first."""

VARIANT_PACKAGES = {"standard": PACKAGES, "minimal": MINIMAL_PACKAGES}
"""Image variants by name; `standard` is the default everywhere."""

PATCHED_VARIANTS = ("standard",)
"""Variants built as cloud images are: the security archive named, its updates installed
(image.apply_security_updates). The minimal one has neither: the oldest packages a user may hand
the tool, so its runs prove that the hardening role adds the security archive and that its
first provision installs the security updates a host lacks."""

DEFAULT_VARIANT = "standard"

ADMIN_USER = "admin"
ADMIN_PASSWORD = "sandbox-admin"
ROOT_PASSWORD = "sandbox-root"
"""Weak, well-known passwords: machines are only reachable from this host, and hardening removes
password logins, which the integration tests then prove."""

RECIPE_VERSION = 3
"""Bump to force a rebuild when something outside the data below changes the image (3: the
security archive named and its updates installed while building, image.apply_security_updates)."""

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


def variant_packages(variant: str, mirror: str) -> tuple[str, ...]:
    """The packages debootstrap adds for variant; an https mirror needs CA certificates to work."""
    packages = VARIANT_PACKAGES[variant]
    if mirror.startswith("https://") and "ca-certificates" not in packages:
        packages = (*packages, "ca-certificates")
    return packages


def recipe_stamp(mirror: str, suite: str, variant: str = DEFAULT_VARIANT) -> str:
    """A fingerprint of everything that shapes an image; a cached image with another is rebuilt.

    The variant shows through its packages and whether it is built with the security updates
    (PATCHED_VARIANTS)."""
    recipe = {
        "version": RECIPE_VERSION,
        "mirror": mirror,
        "suite": suite,
        "packages": variant_packages(variant, mirror),
        "files": IMAGE_FILES,
        "symlinks": IMAGE_SYMLINKS,
        "removed": REMOVED_GLOBS,
        "patched": variant in PATCHED_VARIANTS,
        "users": [ADMIN_USER, ADMIN_PASSWORD, ROOT_PASSWORD],
    }
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]
