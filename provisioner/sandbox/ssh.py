"""The sandbox's SSH trust: its client key, the machines' host keys in known_hosts, the ssh argv.

Host key checking stays on against sandbox machines: each machine gets fresh host keys at creation
and the sandbox records them for its address, exactly as an operator would for a real server.
"""

import threading
from collections.abc import Iterable, Sequence
from pathlib import Path

from provisioner.local_files import write_atomically
from provisioner.sandbox.machine import Machine
from provisioner.sandbox.paths import KEY_PATH, KNOWN_HOSTS_PATH
from provisioner.sandbox.process import run

KEY_COMMENT = "provisioner-sandbox"
_known_hosts_lock = threading.Lock()


def ensure_client_key(key_path: Path = KEY_PATH) -> str:
    """Create the sandbox's ed25519 client key once and return its public line."""
    public = key_path.with_name(key_path.name + ".pub")
    if not key_path.exists():
        key_path.parent.mkdir(parents=True, exist_ok=True)
        public.unlink(missing_ok=True)
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", KEY_COMMENT, "-f", str(key_path)])
    return public.read_text(encoding="utf-8").strip()


def read_public_key(key_path: Path = KEY_PATH) -> str:
    """The public line of the sandbox client key, as put into authorized_keys and the inventory."""
    return key_path.with_name(key_path.name + ".pub").read_text(encoding="utf-8").strip()


def host_key_lines(address: str, public_keys: Iterable[str]) -> list[str]:
    """known_hosts lines for address: `ADDRESS TYPE BASE64`, without the key's own comment."""
    lines = []
    for public_key in public_keys:
        key_type, key_data = public_key.split()[:2]
        lines.append(f"{address} {key_type} {key_data}")
    return lines


def read_machine_host_keys(root: Path) -> list[str]:
    """The public host keys a machine's sshd will present, read from its root filesystem."""
    paths = sorted((root / "etc" / "ssh").glob("ssh_host_*_key.pub"))
    return [path.read_text(encoding="utf-8").strip() for path in paths]


def names_address(line: str, address: str) -> bool:
    """Whether a known_hosts line is about address (plain, comma-listed or `[address]:22`)."""
    hosts = line.split(maxsplit=1)[0] if line.strip() else ""
    return address in {host.removeprefix("[").split("]")[0] for host in hosts.split(",")}


def replace_host_entries(existing: str, address: str, new_lines: Sequence[str]) -> str:
    """known_hosts text with every entry for address replaced by new_lines (none to just remove).

    Addresses are reused by later machines with new host keys, so stale entries must go or ssh
    would (rightly) refuse the new machine.
    """
    kept = [line for line in existing.splitlines() if not names_address(line, address)]
    return "".join(line + "\n" for line in [*kept, *new_lines])


def update_known_hosts(
    address: str, new_lines: Sequence[str], path: Path = KNOWN_HOSTS_PATH
) -> None:
    """Rewrite known_hosts atomically (readers never see half a file; machines boot in threads)."""
    with _known_hosts_lock:
        existing = path.read_text(encoding="utf-8") if path.exists() else ""
        write_atomically(path, replace_host_entries(existing, address, new_lines))


def ssh_argv(machine: Machine, user: str = "admin") -> list[str]:
    """argv of an ssh command to a sandbox machine: sandbox key, sandbox known_hosts, strict checks.

    BatchMode keeps a misconfigured machine from hanging a test on a password prompt.
    """
    return [
        "ssh",
        "-i", str(KEY_PATH),
        "-o", "IdentitiesOnly=yes",
        "-o", f"UserKnownHostsFile={KNOWN_HOSTS_PATH}",
        "-o", "GlobalKnownHostsFile=/dev/null",
        "-o", "StrictHostKeyChecking=yes",
        "-o", "BatchMode=yes",
        "-o", "ConnectTimeout=10",
        "-o", "LogLevel=ERROR",
        "-p", "22",
        f"{user}@{machine.address}",
    ]
