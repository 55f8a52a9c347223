"""Boots, watches and stops one machine: a systemd-nspawn container with systemd as PID 1.

There is no host systemd or machined here, so nspawn runs detached with `--register=no
--keep-unit`, and its own pid is the handle to the machine. The machine's PID 1 (nspawn's child) is
what the network is wired into and what gets the poweroff signal.

A machine shares the controller's kernel, so it must not reach the kernel's host-wide settings:
/proc/sys and /sys stay read-only (only /proc/sys/net, the machine's own network namespace, is
writable) and the capabilities that act on the whole host are withheld. A role run against a
sandbox machine once changed the controller's kernel.unprivileged_bpf_disabled until reboot.
"""

import contextlib
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

from provisioner.sandbox import cgroups
from provisioner.sandbox.errors import SandboxError
from provisioner.sandbox.mounts import is_mount_point
from provisioner.sandbox.process import run

NSPAWN_TMPFS = Path("/run/systemd/nspawn")
BOOT_TIMEOUT = 240.0
POWEROFF_TIMEOUT = 20.0
TERMINATE_TIMEOUT = 10.0
READY_STATES = ("running", "degraded")
"""`offline` is not final: systemctl says so until the machine's systemd accepts connections."""

_children: dict[int, "subprocess.Popen[bytes]"] = {}
"""nspawn processes this Python process started, kept so they can be reaped (no zombies)."""


#: Each booted systemd takes several inotify instances of the host's root user, whose default
#: limit (128) ran out at about sixteen machines at once (CI, 2026-12-04: "Failed to allocate
#: manager object: Too many open files", the machine dead at boot). LXD's production setup
#: gives the same figure.
INOTIFY_INSTANCES = Path("/proc/sys/fs/inotify/max_user_instances")
INOTIFY_INSTANCES_WANTED = 1024


def ensure_inotify_instances() -> None:
    """Raise the host's inotify instance limit to what many machines need (never lower it)."""
    try:
        current = int(INOTIFY_INSTANCES.read_text(encoding="utf-8").strip())
        if current < INOTIFY_INSTANCES_WANTED:
            INOTIFY_INSTANCES.write_text(f"{INOTIFY_INSTANCES_WANTED}\n", encoding="utf-8")
    except (OSError, ValueError):
        pass  # a host that does not let us: machines boot as before, fewer at once


def ensure_nspawn_tmpfs() -> None:
    """nspawn refuses to clean up its propagation directory on a non-tmpfs /run; give it one."""
    if not is_mount_point(NSPAWN_TMPFS):
        NSPAWN_TMPFS.mkdir(parents=True, exist_ok=True)
        run(["mount", "-t", "tmpfs", "-o", "mode=0755", "tmpfs", str(NSPAWN_TMPFS)])


HOST_WIDE_CAPABILITIES = (
    "CAP_SYS_MODULE",     # load and unload the controller's kernel modules
    "CAP_SYS_TIME",       # set the controller's clock (chrony would run and steer it)
    "CAP_SYSLOG",         # clear the kernel log, change the console log level
    "CAP_SYS_RAWIO",      # raw I/O ports and device memory
    "CAP_WAKE_ALARM",     # wake the controller from suspend
    "CAP_BLOCK_SUSPEND",  # keep the controller from suspending
)
"""Withheld from machines although `--capability=all` grants the rest: each acts on the shared
kernel, not on the machine's namespaces, and nothing a role or Docker does in a machine needs it.
CAP_SYS_PACCT stays: process accounting is per PID namespace, and the hardening role turns it on."""

API_VFS_WRITABLE = "SYSTEMD_NSPAWN_API_VFS_WRITABLE"
"""Makes nspawn mount /proc/sys and /sys writable: the controller's kernel.*, vm.* and fs.*
settings would then be writable from inside a machine. Never passed on to nspawn."""


def nspawn_argv(name: str, root: Path) -> list[str]:
    """The nspawn command for a machine, including what Docker inside it will need later.

    Docker needs most capabilities and the keyring and bpf system calls; the read-only cgroup v1
    controllers it also needs writable are remounted inside (image_recipe.CGROUPS_SCRIPT).
    """
    return [
        "systemd-nspawn", "--boot", f"--directory={root}", f"--machine={name}",
        "--register=no", "--keep-unit", "--console=passive", "--private-network",
        "--link-journal=no", "--resolv-conf=off",
        "--capability=all", f"--drop-capability={','.join(HOST_WIDE_CAPABILITIES)}",
        "--system-call-filter=add_key keyctl bpf",
    ]


def nspawn_environment() -> dict[str, str]:
    """The caller's environment without the variable that would expose the host's sysctls."""
    environment = {key: value for key, value in os.environ.items() if key != API_VFS_WRITABLE}
    return {**environment, "TERM": "dumb"}


JOIN_CGROUPS = 'while [ "$1" != -- ]; do echo $$ > "$1" || exit 125; shift; done; shift; exec "$@"'
"""Moves the shell into each given cgroup, then becomes nspawn: nspawn and everything it starts
are in the machine's own cgroups from their first instruction (see cgroups.py for why)."""


def launch_argv(name: str, root: Path, cgroup_procs: list[Path]) -> list[str]:
    """nspawn's command, started from inside the machine's own cgroups."""
    return ["sh", "-c", JOIN_CGROUPS, "sh", *map(str, cgroup_procs), "--",
            *nspawn_argv(name, root)]


def start(name: str, root: Path, log_path: Path) -> int:
    """Start the machine detached (own session, no stdin) and return nspawn's pid."""
    environment = nspawn_environment()
    cgroup_procs = cgroups.create(cgroups.machine_cgroups(name))
    with open(log_path, "ab") as log, open(os.devnull, "rb") as no_input:
        process = subprocess.Popen(
            launch_argv(name, root, cgroup_procs), stdin=no_input, stdout=log,
            stderr=subprocess.STDOUT, env=environment, start_new_session=True,
        )
    _children[process.pid] = process
    return process.pid


def is_running(pid: int, root: Path) -> bool:
    """Whether pid is still the nspawn of the machine at root (pids get reused; zombies are dead).

    An nspawn this process started is asked directly: between fork and exec its command line is
    still Python's, which would make a freshly started machine look like a stranger.
    """
    child = _children.get(pid)
    if child is not None:
        if child.poll() is None:
            return True
        _children.pop(pid, None)
        return False
    try:
        status = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8")
        command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    state = status.rsplit(")", 1)[1].split()[0]
    is_nspawn = b"systemd-nspawn" in command[0] and f"--directory={root}".encode() in command
    return state != "Z" and is_nspawn


def find_leader(nspawn_pid: int) -> int | None:
    """The machine's PID 1 as seen from the host: nspawn's child living in a new pid namespace.

    During startup nspawn briefly has a helper child in the host's pid namespace; checking the
    namespace keeps that helper from being mistaken for the machine.
    """
    try:
        children = Path(f"/proc/{nspawn_pid}/task/{nspawn_pid}/children").read_text()
        host_namespace = os.readlink(f"/proc/{nspawn_pid}/ns/pid")
    except OSError:
        return None
    for child in children.split():
        try:
            if os.readlink(f"/proc/{child}/ns/pid") != host_namespace:
                return int(child)
        except OSError:
            continue
    return None


def wait_for_leader(nspawn_pid: int, root: Path, log_path: Path, timeout: float = 30.0) -> int:
    """Wait until the machine's PID 1 exists, failing early if nspawn exits instead."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        leader = find_leader(nspawn_pid)
        if leader is not None:
            return leader
        if not is_running(nspawn_pid, root):
            raise boot_failure("systemd-nspawn exited before the machine started", log_path)
        time.sleep(0.05)
    raise boot_failure(f"the machine did not start within {timeout:g} s", log_path)


def boot_failure(problem: str, log_path: Path) -> SandboxError:
    """A boot error that carries the tail of the machine's console log, where the cause shows."""
    try:
        text = log_path.read_text(encoding="utf-8", errors="replace")
        lines = [line for line in text.splitlines() if line.strip()]
    except OSError:
        lines = []
    tail = "\n".join(lines[-25:]) or "(the console log is empty)"
    return SandboxError(
        f"Booting {log_path.parent.name} failed: {problem}. Its console log ends with:\n{tail}\n"
        "Fix the cause shown above, run `sandbox.down`, then `sandbox.up` again."
    )


def ssh_answers(address: str, timeout: float = 1.0) -> bool:
    """Whether sshd at address accepts a TCP connection and sends its version banner."""
    try:
        with socket.create_connection((address, 22), timeout=timeout) as connection:
            return connection.recv(8).startswith(b"SSH-")
    except OSError:
        return False


def systemctl(leader: int, *arguments: str) -> str:
    """What `systemctl ARGUMENTS` prints inside the machine."""
    completed = subprocess.run(
        ["nsenter", f"--target={leader}", "--mount", "--uts", "--ipc", "--net", "--pid", "--",
         "systemctl", *arguments],
        capture_output=True, text=True, timeout=10, check=False,
    )
    return completed.stdout.strip()


def system_state(leader: int) -> str:
    """`systemctl is-system-running` inside the machine (e.g. starting, running, degraded)."""
    return systemctl(leader, "is-system-running") or "unknown"


def described_state(leader: int, state: str) -> str:
    """The state, naming the failed units when degraded: a fresh machine should have none."""
    if state != "degraded":
        return state
    listing = systemctl(leader, "list-units", "--failed", "--plain", "--no-legend")
    units = [line.split()[0] for line in listing.splitlines() if line.split()]
    return f"degraded, failed: {', '.join(units) or 'none listed'}"


def wait_until_ready(
    nspawn_pid: int, leader: int, root: Path, address: str, log_path: Path
) -> str:
    """Wait for sshd's banner and for systemd to finish booting; return the final system state."""
    deadline = time.monotonic() + BOOT_TIMEOUT
    state = "unknown"
    while time.monotonic() < deadline:
        if not is_running(nspawn_pid, root):
            raise boot_failure("the machine stopped while booting", log_path)
        state = system_state(leader)
        if state in READY_STATES and ssh_answers(address):
            return described_state(leader, state)
        if state in ("maintenance", "stopping"):
            raise boot_failure(f"systemd reports the system as {state!r}", log_path)
        time.sleep(0.1)
    raise boot_failure(
        f"not ready within {BOOT_TIMEOUT:g} s (system state {state!r}, "
        f"sshd answering: {ssh_answers(address)})", log_path,
    )


def wait_for_exit(pid: int, root: Path, timeout: float) -> bool:
    """Wait up to timeout for the machine's nspawn to exit; say whether it did."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not is_running(pid, root):
            return True
        time.sleep(0.1)
    return not is_running(pid, root)


def stop(pid: int, root: Path) -> None:
    """Power the machine off cleanly, then insist: SIGTERM to nspawn, finally SIGKILL.

    SIGRTMIN+4 asks the machine's systemd for a clean poweroff, as `machinectl poweroff` would.
    """
    if not is_running(pid, root):
        return
    leader = find_leader(pid)
    if leader is not None:
        send_signal(leader, signal.SIGRTMIN + 4)
        if wait_for_exit(pid, root, POWEROFF_TIMEOUT):
            return
    send_signal(pid, signal.SIGTERM)
    if wait_for_exit(pid, root, TERMINATE_TIMEOUT):
        return
    for target in (leader, pid):
        if target is not None:
            send_signal(target, signal.SIGKILL)
    if not wait_for_exit(pid, root, TERMINATE_TIMEOUT):
        raise SandboxError(f"systemd-nspawn (pid {pid}) survived SIGKILL; reboot the host.")


def send_signal(pid: int, signal_number: int) -> None:
    """Signal pid, ignoring a process that has already gone."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal_number)


def orphan_nspawns(machines_dir: Path) -> list[tuple[int, Path]]:
    """(pid, root) of every running nspawn whose root lies under machines_dir, recorded or not."""
    prefix = f"--directory={machines_dir}/".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        for argument in command:
            if argument.startswith(prefix) and b"systemd-nspawn" in command[0]:
                found.append((int(entry.name), Path(argument.split(b"=", 1)[1].decode())))
    return found
