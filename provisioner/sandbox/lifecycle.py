"""up, down and list: keeps the set of running sandbox machines what the caller asked for.

Every change happens under one host-wide lock and is recorded in the state file right away, so
concurrent callers (a test run next to a demo) and interrupted runs leave a state `down` can clean.
"""

import fcntl
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

from provisioner.sandbox import cgroups, machine_root, machines, network, ssh
from provisioner.sandbox.errors import SandboxError
from provisioner.sandbox.host_tools import ensure_host_tools, require_root
from provisioner.sandbox.image import check_suite, check_variant, ensure_image, image_name
from provisioner.sandbox.image_recipe import DEFAULT_VARIANT
from provisioner.sandbox.machine import Machine
from provisioner.sandbox.paths import FAILED_BOOT_LOGS_DIR, LOCK_PATH, MACHINES_DIR, SANDBOX_DIR
from provisioner.sandbox.state import SandboxState, load_state, save_state

Progress = Callable[[str], None]
PREFIX_PATTERN = re.compile(r"[a-z][a-z0-9]{0,9}")
MAX_COUNT = 99


class BaseImage(NamedTuple):
    """The cached image new machines are made from, and the suite and variant they record."""

    suite: str
    variant: str
    root: Path


@contextmanager
def sandbox_lock() -> Iterator[None]:
    """Serialise up/down across processes; the state file is read-modify-written under it."""
    SANDBOX_DIR.mkdir(parents=True, exist_ok=True)
    with open(LOCK_PATH, "w", encoding="utf-8") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        yield


def check_request(count: int, suite: str, prefix: str, variant: str = DEFAULT_VARIANT) -> None:
    """Reject requests that cannot work before anything on the host changes."""
    check_suite(suite)
    check_variant(variant)
    if not PREFIX_PATTERN.fullmatch(prefix):
        raise SandboxError(
            f"Machine prefix {prefix!r} is not usable: use 1-10 lowercase letters and digits, "
            "starting with a letter (interface names on the host are limited to 15 characters)."
        )
    if not 1 <= count <= MAX_COUNT:
        raise SandboxError(f"Cannot boot {count} machines: ask for between 1 and {MAX_COUNT}.")


def machine_names(prefix: str, count: int) -> list[str]:
    """The names up() manages for a request: prefix1 .. prefixN."""
    return [f"{prefix}{number}" for number in range(1, count + 1)]


def list_machines() -> list[Machine]:
    """The sandbox machines running now, by name (records of machines that died are skipped)."""
    return [machine for machine in load_state().machines
            if machines.is_running(machine.pid, machine.root)]


def up(
    count: int = 1, suite: str = "bookworm", prefix: str = "sandbox",
    progress: Progress | None = None, variant: str = DEFAULT_VARIANT,
) -> list[Machine]:
    """Make sure machines prefix1..prefixN run (booting only the missing ones) and return them.

    variant picks the image: `standard` (the default) or `minimal` (image_recipe says what each
    holds); machines of different variants and suites run side by side under other prefixes.
    """
    report = progress or (lambda _line: None)
    check_request(count, suite, prefix, variant)
    ensure_host_tools()
    with sandbox_lock():
        state = load_state()
        forget_dead(state)
        wanted = machine_names(prefix, count)
        check_images_match(state, wanted, suite, variant)
        missing = [name for name in wanted if state.find(name) is None]
        for machine in state.machines:
            if machine.name in wanted:
                report(f"{machine.name} already running at {machine.address}")
        if missing:
            in_use = any(image_of(machine) == image_name(suite, variant)
                         for machine in state.machines)
            root = ensure_image(suite, variant, in_use, report)
            prepare_host(state)
            boot_all(state, missing, BaseImage(suite, variant, root), report)
        return [machine for machine in state.machines if machine.name in wanted]


def image_of(machine: Machine) -> str:
    """The cached image a machine's root filesystem lies over."""
    return image_name(machine.suite, machine.variant)


def check_images_match(
    state: SandboxState, wanted: Sequence[str], suite: str, variant: str
) -> None:
    """A running machine of another suite or variant is not what was asked for; do not reuse it."""
    for name in wanted:
        machine = state.find(name)
        if machine is not None and image_of(machine) != image_name(suite, variant):
            raise SandboxError(
                f"{name} already runs {image_of(machine)}, not {image_name(suite, variant)}. "
                "Run `sandbox.down` (or pick another prefix) and then `sandbox.up` again."
            )


def prepare_host(state: SandboxState) -> None:
    """Things all machines share: the client key, the bridge, NAT, nspawn's tmpfs and enough
    inotify instances."""
    ssh.ensure_client_key()
    network.ensure_bridge()
    changed_forwarding = network.ensure_nat()
    if changed_forwarding is not None and state.restore_ip_forward is None:
        state.restore_ip_forward = changed_forwarding
        save_state(state)
    machines.ensure_nspawn_tmpfs()
    machines.ensure_inotify_instances()


def boot_all(
    state: SandboxState, names: Sequence[str], image: BaseImage, report: Progress
) -> None:
    """Boot names in parallel, recording each machine as soon as it is up; raise if any failed."""
    plan = plan_addresses(names, [machine.address for machine in state.machines])
    public_key = ssh.read_public_key()
    record_lock = threading.Lock()

    def boot_and_record(name: str, address: str) -> None:
        started = time.monotonic()
        machine, system_state = boot_machine(name, address, image, public_key)
        with record_lock:
            record(state, machine)
        suffix = "" if system_state == "running" else f" (systemd reports {system_state})"
        report(f"booted {name} at {address} in {time.monotonic() - started:.1f} s{suffix}")

    with ThreadPoolExecutor(max_workers=len(plan)) as pool:
        futures = [pool.submit(boot_and_record, name, address) for name, address in plan]
    errors = [future.exception() for future in futures if future.exception() is not None]
    if errors:
        raise SandboxError("\n\n".join(str(error) for error in errors))


def machine_number(name: str) -> int:
    """The number at the end of a machine name (sandbox12 -> 12)."""
    return int(name[len(name.rstrip("0123456789")):])


def name_order(name: str) -> tuple[str, int]:
    """Sort key that puts sandbox2 before sandbox10."""
    return name.rstrip("0123456789"), machine_number(name)


def plan_addresses(names: Sequence[str], used: Sequence[str]) -> list[tuple[str, str]]:
    """Pair each new machine name with a free address, preferring .(10+N) for machine N."""
    taken = list(used)
    plan = []
    for name in names:
        address = network.choose_address(machine_number(name), taken)
        taken.append(address)
        plan.append((name, address))
    return plan


def record(state: SandboxState, machine: Machine) -> None:
    """Remember a booted machine and trust its host keys for its address."""
    host_keys = ssh.read_machine_host_keys(machine.root)
    ssh.update_known_hosts(machine.address, ssh.host_key_lines(machine.address, host_keys))
    state.machines.append(machine)
    state.machines.sort(key=lambda item: name_order(item.name))
    save_state(state)


def boot_machine(
    name: str, address: str, image: BaseImage, public_key: str
) -> tuple[Machine, str]:
    """Create, personalise, start and wire one machine; return it once sshd and systemd are up.

    A machine that fails is removed again (its console log is kept for the error message), so a
    failed `up` never leaves a half machine behind.
    """
    root = machine_root.create_root(name, image.root)
    log_path = machine_root.machine_dir(name) / "console.log"
    pid: int | None = None
    try:
        machine_root.personalise(root, name, public_key)
        pid = machines.start(name, root, log_path)
        leader = machines.wait_for_leader(pid, root, log_path)
        network.wire_machine(name, leader, address)
        system_state = machines.wait_until_ready(pid, leader, root, address, log_path)
    except SandboxError as error:
        kept = keep_failure_log(log_path)
        discard(name, pid, root)
        raise SandboxError(f"{error}\nThe whole console log is kept in {kept}.") from error
    except BaseException:
        discard(name, pid, root)
        raise
    machine = Machine(name=name, address=address, suite=image.suite, pid=pid, root=root,
                      variant=image.variant)
    return machine, system_state


def keep_failure_log(log_path: Path) -> Path:
    """Save a failed machine's console log outside its machine directory, which is deleted."""
    kept = FAILED_BOOT_LOGS_DIR / f"{log_path.parent.name}.log"
    FAILED_BOOT_LOGS_DIR.mkdir(parents=True, exist_ok=True)
    if log_path.exists():
        log_path.replace(kept)
    return kept


def discard(name: str, pid: int | None, root: Path) -> None:
    """Stop a machine if it runs and remove everything it had on the host."""
    if pid is not None:
        machines.stop(pid, root)
    cgroups.remove(cgroups.machine_cgroups(name))
    network.remove_machine_link(name)
    machine_root.remove_root(name)


def forget_dead(state: SandboxState) -> None:
    """Clean up after machines that stopped on their own (host reboot); drop their records."""
    dead = [machine for machine in state.machines
            if not machines.is_running(machine.pid, machine.root)]
    for machine in dead:
        discard(machine.name, None, machine.root)
        ssh.update_known_hosts(machine.address, [])
    if dead:
        state.machines = state.without({machine.name for machine in dead})
        save_state(state)


def down(names: Sequence[str] | None = None) -> None:
    """Stop and remove the named machines, or all the sandbox made (cached image and key stay).

    Names the sandbox does not know are ignored, so calling it twice is harmless. Once no machine
    is left, the bridge, the NAT rule and the state file go too.
    """
    require_root()
    with sandbox_lock():
        state = load_state()
        chosen = set(names) if names is not None else {m.name for m in state.machines}
        targets = [machine for machine in state.machines if machine.name in chosen]
        with ThreadPoolExecutor(max_workers=max(1, len(targets))) as pool:
            list(pool.map(remove_machine, targets))
        state.machines = state.without(chosen)
        save_state(state)
        if names is None:
            remove_orphans()
        if not state.machines:
            network.remove_shared_network(state.restore_ip_forward)
            state.restore_ip_forward = None
            save_state(state)


def remove_machine(machine: Machine) -> None:
    """Stop one recorded machine and remove its files, veth and known_hosts entries."""
    discard(machine.name, machine.pid, machine.root)
    ssh.update_known_hosts(machine.address, [])


def remove_orphans() -> None:
    """Stop machines the state lost track of (a crashed `up`) and delete leftover machine dirs."""
    for pid, root in machines.orphan_nspawns(MACHINES_DIR):
        machines.stop(pid, root)
    cgroups.remove_unused()
    if MACHINES_DIR.exists():
        for directory in MACHINES_DIR.iterdir():
            network.remove_machine_link(directory.name)
            machine_root.remove_root(directory.name)
