"""Creates and removes a machine's root filesystem, and gives it its own identity before boot.

The root is an overlay over the cached base image (instant, and the image stays untouched); where
overlayfs cannot be mounted it is a copy instead. Identity that must differ per machine (host keys,
machine-id, hostname) is written here, so no two machines ever share it.
"""

import os
import uuid
from pathlib import Path

from provisioner.sandbox import image_recipe
from provisioner.sandbox.errors import SandboxError
from provisioner.sandbox.mounts import remove_tree
from provisioner.sandbox.paths import MACHINES_DIR
from provisioner.sandbox.process import run, succeeds

HOST_RESOLV_CONF = Path("/etc/resolv.conf")
RESOLVED_UPSTREAM = Path("/run/systemd/resolve/resolv.conf")


def machine_dir(name: str) -> Path:
    """Everything of one machine on the host: root, overlay layers, console log."""
    return MACHINES_DIR / name


def create_root(name: str, image: Path) -> Path:
    """A fresh writable root for machine name over image; a leftover of that name goes first."""
    directory = machine_dir(name)
    remove_tree(directory)
    root, upper, work = directory / "root", directory / "upper", directory / "work"
    for path in (root, upper, work):
        path.mkdir(parents=True)
    options = f"lowerdir={image},upperdir={upper},workdir={work}"
    if not succeeds(["mount", "-t", "overlay", "overlay", "-o", options, str(root)]):
        root.rmdir()
        run(["cp", "-a", "--reflink=auto", str(image), str(root)])
    return root


def remove_root(name: str) -> None:
    """Unmount and delete everything create_root made for machine name (nothing if absent)."""
    remove_tree(machine_dir(name))


def personalise(root: Path, name: str, public_key: str) -> None:
    """Per-machine identity and access, written into the root before its first boot."""
    write(root / "etc/hostname", f"{name}\n")
    write(root / "etc/hosts", f"127.0.0.1\tlocalhost\n127.0.1.1\t{name}\n"
          "::1\tlocalhost ip6-localhost ip6-loopback\n")
    write(root / "etc/machine-id", uuid.uuid4().hex + "\n", mode=0o444)
    write(root / "etc/resolv.conf", host_resolv_conf())
    regenerate_host_keys(root)
    authorize_admin_key(root, public_key)


def write(path: Path, text: str, mode: int = 0o644) -> None:
    """Replace a file in the machine's root (a symlink there is replaced, never followed)."""
    if path.is_symlink():
        path.unlink()
    path.write_text(text, encoding="utf-8")
    os.chmod(path, mode)


def host_resolv_conf() -> str:
    """The host's resolver config; systemd-resolved's upstream list when the host uses its stub."""
    if RESOLVED_UPSTREAM.exists():
        return RESOLVED_UPSTREAM.read_text(encoding="utf-8")
    return HOST_RESOLV_CONF.read_text(encoding="utf-8")


def regenerate_host_keys(root: Path) -> None:
    """Fresh host keys, so every machine presents its own identity (the image holds none)."""
    for old_key in (root / "etc/ssh").glob("ssh_host_*"):
        old_key.unlink()
    run(["ssh-keygen", "-A", "-f", str(root)])


def authorize_admin_key(root: Path, public_key: str) -> None:
    """Let the sandbox client key log in as the admin user, with the modes sshd insists on."""
    uid, gid, home = passwd_entry(root, image_recipe.ADMIN_USER)
    ssh_dir = root / home.lstrip("/") / ".ssh"
    ssh_dir.mkdir(mode=0o700, exist_ok=True)
    keys = ssh_dir / "authorized_keys"
    write(keys, public_key + "\n", mode=0o600)
    for path in (ssh_dir, keys):
        os.chown(path, uid, gid)


def passwd_entry(root: Path, user: str) -> tuple[int, int, str]:
    """uid, gid and home of user in the machine's own /etc/passwd (not the host's)."""
    for line in (root / "etc/passwd").read_text(encoding="utf-8").splitlines():
        fields = line.split(":")
        if fields[0] == user:
            return int(fields[2]), int(fields[3]), fields[5]
    raise SandboxError(
        f"The base image has no {user!r} user. Delete the image cache (/var/cache/"
        "provisioner-sandbox) so the next `sandbox.up` rebuilds it."
    )
