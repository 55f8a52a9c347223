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
