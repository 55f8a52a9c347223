"""Listening TCP sockets read from /proc/net/tcp and tcp6, for the specs of postgres and pgbouncer.

Why not testinfra's ``host.socket``: it runs ``ss`` or ``netstat``, and the minimal image has
neither (no iproute2, no net-tools). The kernel's own tables are on every Linux host; this
reads them with ``cat`` and parses them here (pure, unit-tested on sample content).
"""

from __future__ import annotations

import ipaddress
from typing import Any

#: /proc/net/tcp's ``st`` column for a socket in the LISTEN state.
_LISTEN = "0A"


def _address(hex_address: str) -> str:
    """A /proc/net/tcp{,6} address: 32-bit words in the host's (little-endian) byte order."""
    raw = bytes.fromhex(hex_address)
    words = b"".join(raw[index:index + 4][::-1] for index in range(0, len(raw), 4))
    return str(ipaddress.ip_address(words))


def parse_listening(text: str) -> set[tuple[str, int]]:
    """(address, port) of every LISTEN socket in the content of /proc/net/tcp and/or tcp6 (the
    header lines are skipped)."""
    found = set()
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 4 or fields[3] != _LISTEN or ":" not in fields[1]:
            continue
        address, _, port = fields[1].rpartition(":")
        try:
            found.add((_address(address), int(port, 16)))
        except ValueError:
            continue
    return found


def listening(host: Any) -> set[tuple[str, int]]:
    """The host's listening TCP sockets (testinfra ``host``), IPv4 and IPv6."""
    return parse_listening(host.check_output("cat /proc/net/tcp /proc/net/tcp6 2>/dev/null; true"))


def listens(sockets: set[tuple[str, int]], address: str, port: int) -> bool:
    """Whether ``address``:``port`` is served: bound to it, or to every address of its family."""
    wildcard = "::" if ":" in address else "0.0.0.0"
    return (address, port) in sockets or (wildcard, port) in sockets


#: Prints ``host-addr ADDRESS`` for each address of the host (the kernel's own tables, as for
#: the sockets: the minimal image has no ``ip``); IPv6 ones as 32 hex digits.
ADDRESSES_PROBE = (
    "awk '/\\|--/ { a = $2 } /\\/32 host LOCAL/ { print \"host-addr \" a }' /proc/net/fib_trie "
    "2>/dev/null | sort -u; awk '{ print \"host-addr \" $1 }' /proc/net/if_inet6 2>/dev/null")
#: listen values that are not one address of the host: every address, or the name of loopback.
_ANY = ("", "*", "localhost", "0.0.0.0", "::")


def host_addresses(output: str) -> set[str]:
    """The addresses ADDRESSES_PROBE printed (other lines are ignored), in ipaddress's form."""
    found = set()
    for line in output.splitlines():
        if not line.startswith("host-addr "):
            continue
        text = line.split(" ", 1)[1].strip()
        try:
            if len(text) == 32 and ":" not in text and "." not in text:
                found.add(str(ipaddress.ip_address(bytes.fromhex(text))))
            else:
                found.add(str(ipaddress.ip_address(text)))
        except ValueError:
            continue
    return found


def foreign_addresses(wanted: list[str], addresses: set[str]) -> list[str]:
    """The listen addresses in ``wanted`` that are none of the host's (nothing when the host's
    addresses could not be read: the handler's proof still fails on an unbound one)."""
    if not addresses:
        return []
    missing = []
    for address in wanted:
        if address.strip() in _ANY:
            continue
        try:
            if str(ipaddress.ip_address(address.strip())) not in addresses:
                missing.append(address.strip())
        except ValueError:
            continue
    return missing
