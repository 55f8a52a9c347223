"""Makes sure the host can run sandbox machines: root, and the Debian tools the sandbox drives."""

import os
import shutil

from provisioner.sandbox.errors import SandboxError
from provisioner.sandbox.process import run

TOOL_PACKAGES: dict[str, str] = {
    "debootstrap": "debootstrap",
    "systemd-nspawn": "systemd-container",
    "iptables": "iptables",
    "ip": "iproute2",
    "ssh": "openssh-client",
    "ssh-keygen": "openssh-client",
    "nsenter": "util-linux",
}
"""Each command the sandbox runs on the host, and the Debian package that provides it."""

APT_ENV = {"DEBIAN_FRONTEND": "noninteractive"}


def require_root() -> None:
    """Refuse early: mounts, network namespaces and debootstrap all need root."""
    if os.geteuid() != 0:
        raise SandboxError(
            "The sandbox needs root: it mounts overlay filesystems, creates a network bridge and "
            "boots machines with systemd-nspawn. Run the command again as root (for example "
            "with sudo)."
        )


def missing_packages() -> list[str]:
    """Packages whose commands are not on PATH yet, in a stable order and without repeats."""
    missing = [package for tool, package in TOOL_PACKAGES.items() if shutil.which(tool) is None]
    return sorted(set(missing))


def ensure_host_tools() -> None:
    """Install the host tools the sandbox needs, costing nothing when they are all present.

    A fresh machine of the project's kind lacks debootstrap and systemd-nspawn; installing them
    here lets `sandbox.up` work without a separate setup step. The package lists are refreshed only
    when the first attempt fails, since they are usually current enough.
    """
    require_root()
    packages = missing_packages()
    if not packages:
        return
    install = ["apt-get", "install", "-y", *packages]
    try:
        run(install, extra_env=APT_ENV)
    except SandboxError:
        run(["apt-get", "update"], extra_env=APT_ENV)
        try:
            run(install, extra_env=APT_ENV)
        except SandboxError as error:
            raise SandboxError(
                f"Could not install the host packages the sandbox needs ({', '.join(packages)}). "
                f"Install them with `apt-get install {' '.join(packages)}` and try again. "
                f"Details: {error}"
            ) from error
    if missing_packages():
        raise SandboxError(
            f"Installed {', '.join(packages)} but {', '.join(missing_packages())} still provide "
            "no command on PATH; check that /usr/sbin is on PATH and try again."
        )
