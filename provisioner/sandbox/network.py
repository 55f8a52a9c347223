"""The sandbox's network: one host bridge, a hand-wired veth per machine, and NAT to the outside.

There is no host systemd-networkd or machined to do this, so it is done with `ip` and `iptables`
directly. Every step checks before it acts, so repeating it is harmless.
"""

import json
from collections.abc import Iterable
from pathlib import Path

from provisioner.sandbox.errors import SandboxError
from provisioner.sandbox.process import run, succeeds

BRIDGE = "provbr0"
SUBNET_PREFIX = "10.77.0."
GATEWAY = SUBNET_PREFIX + "1"
SUBNET = SUBNET_PREFIX + "0/24"
FIRST_HOST, LAST_HOST = 11, 254
IP_FORWARD = Path("/proc/sys/net/ipv4/ip_forward")
MASQUERADE_RULE = ["POSTROUTING", "-s", SUBNET, "!", "-o", BRIDGE, "-j", "MASQUERADE"]
INTERFACE_NAME_LIMIT = 15


def host_interface(machine_name: str) -> str:
    """The host end of a machine's veth; the kernel allows 15 characters, so names are capped."""
    name = f"vt-{machine_name}"
    if len(name) > INTERFACE_NAME_LIMIT:
        raise SandboxError(
            f"Machine name {machine_name!r} is too long for its network interface {name!r} "
            f"(at most {INTERFACE_NAME_LIMIT} characters); choose a shorter prefix."
        )
    return name


def choose_address(index: int, used: Iterable[str]) -> str:
    """The address for the machine numbered index: 10.77.0.(10+index) if free, else the lowest free.

    Matching the number keeps sandbox1 at .11 in the common case, while machines with other
    prefixes on the same bridge still get distinct addresses.
    """
    taken = set(used)
    preferred = f"{SUBNET_PREFIX}{10 + index}"
    if FIRST_HOST <= 10 + index <= LAST_HOST and preferred not in taken:
        return preferred
    for host in range(FIRST_HOST, LAST_HOST + 1):
        if f"{SUBNET_PREFIX}{host}" not in taken:
            return f"{SUBNET_PREFIX}{host}"
    raise SandboxError(
        f"All sandbox addresses in {SUBNET} are in use; stop some machines with `sandbox.down`."
    )


def link_exists(name: str) -> bool:
    """Whether a network interface called name exists in this network namespace.

    Asked of `ip` rather than /sys/class/net, which shows the namespace /sys was mounted in.
    """
    return succeeds(["ip", "link", "show", "dev", name])


def bridge_addresses() -> list[str]:
    """The IPv4 addresses currently on the sandbox bridge."""
    output = run(["ip", "-j", "-4", "addr", "show", "dev", BRIDGE])
    return [info["local"] for link in json.loads(output) for info in link.get("addr_info", [])]


def mac_address(address: str) -> str:
    """A fixed, locally administered MAC for an IPv4 address: 02:00 then the address's 4 bytes."""
    return "02:00:" + ":".join(f"{int(part):02x}" for part in address.split("."))


def ensure_bridge() -> None:
    """Create the bridge with the gateway address and bring it up, if it is not already so.

    The bridge gets a fixed MAC: by default it takes the lowest MAC among its ports, so it would
    change whenever a machine comes or goes and leave the other machines with a stale gateway.
    """
    if not link_exists(BRIDGE):
        run(["ip", "link", "add", BRIDGE, "type", "bridge"])
    run(["ip", "link", "set", BRIDGE, "address", mac_address(GATEWAY)])
    if GATEWAY not in bridge_addresses():
        run(["ip", "addr", "add", f"{GATEWAY}/24", "dev", BRIDGE])
    run(["ip", "link", "set", BRIDGE, "up"])


def ensure_nat() -> str | None:
    """Let machines reach the mirror through the host; return ip_forward's old value if changed."""
    previous = IP_FORWARD.read_text(encoding="utf-8").strip()
    if previous != "1":
        IP_FORWARD.write_text("1\n", encoding="utf-8")
    if not succeeds(["iptables", "-t", "nat", "-C", *MASQUERADE_RULE]):
        run(["iptables", "-t", "nat", "-A", *MASQUERADE_RULE])
    return previous if previous != "1" else None


def remove_shared_network(restore_ip_forward: str | None) -> None:
    """Undo ensure_bridge and ensure_nat once no machine needs them."""
    while succeeds(["iptables", "-t", "nat", "-C", *MASQUERADE_RULE]):
        run(["iptables", "-t", "nat", "-D", *MASQUERADE_RULE])
    if link_exists(BRIDGE):
        run(["ip", "link", "del", BRIDGE])
    if restore_ip_forward is not None:
        IP_FORWARD.write_text(restore_ip_forward + "\n", encoding="utf-8")


def wire_machine(machine_name: str, leader_pid: int, address: str) -> None:
    """Give a machine's private network namespace a veth to the bridge, its address and a route.

    The machine's end is created directly inside its namespace (named host0, as nspawn would), so
    it never appears on the host and cannot clash with another machine's. Its MAC address follows
    from its IP address, so a machine that reuses an address is reachable at once: with random
    MACs, stale ARP entries on the host and the other machines cut it off for 30-45 s.
    """
    interface = host_interface(machine_name)
    remove_machine_link(machine_name)
    run(["ip", "link", "add", interface, "type", "veth", "peer", "name", "host0",
         "address", mac_address(address), "netns", str(leader_pid)])
    run(["ip", "link", "set", interface, "master", BRIDGE, "up"])
    inside = ["nsenter", "--target", str(leader_pid), "--net", "--"]
    run([*inside, "ip", "link", "set", "lo", "up"])
    run([*inside, "ip", "addr", "add", f"{address}/24", "dev", "host0"])
    run([*inside, "ip", "link", "set", "host0", "up"])
    run([*inside, "ip", "route", "add", "default", "via", GATEWAY])
    run(["ip", "neigh", "flush", "to", address, "dev", BRIDGE])


def remove_machine_link(machine_name: str) -> None:
    """Delete a machine's host-side veth if it outlived the machine (normally it dies with it)."""
    interface = host_interface(machine_name)
    if link_exists(interface):
        succeeds(["ip", "link", "del", interface])
    if link_exists(interface):
        raise SandboxError(f"Could not delete {interface}; remove it with `ip link del` and retry.")
