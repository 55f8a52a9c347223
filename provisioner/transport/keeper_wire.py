"""What travels between a run and a connection keeper: the host to log in to, and messages.

A message is a 4-byte big-endian length, a UTF-8 JSON header of that length, then the raw byte
bodies whose lengths the header lists under ``bodies``. Scripts and their output travel as bytes
beside the JSON, never inside it, so nothing is re-encoded on the way.
"""

from __future__ import annotations

import json
import socket
import struct
from pathlib import Path
from typing import Any

from provisioner.inventory.hosts import HostConfig, SshSettings

LENGTH = struct.Struct(">I")
#: Headers are a few hundred bytes; anything near this is not a message from our peer.
MAX_HEADER = 1 << 20


class WireError(ConnectionError):
    """The peer closed the socket inside a message, or sent something that is not one."""


def send_message(sock: socket.socket, header: dict[str, Any], *bodies: bytes) -> None:
    encoded = json.dumps({**header, "bodies": [len(body) for body in bodies]}).encode()
    sock.sendall(b"".join((LENGTH.pack(len(encoded)), encoded, *bodies)))


def receive_message(sock: socket.socket) -> tuple[dict[str, Any], list[bytes]]:
    """The next message; EOFError when the peer closed cleanly before sending one."""
    first = sock.recv(LENGTH.size)
    if not first:
        raise EOFError("closed")
    (length,) = LENGTH.unpack(first + _exactly(sock, LENGTH.size - len(first)))
    if length > MAX_HEADER:
        raise WireError(f"header of {length} bytes")
    try:
        header = json.loads(_exactly(sock, length))
    except ValueError as error:
        raise WireError(f"unreadable header: {error}") from None
    if not isinstance(header, dict) or not isinstance(header.get("bodies"), list):
        raise WireError("header without body lengths")
    return header, [_exactly(sock, int(size)) for size in header["bodies"]]


def host_settings(config: HostConfig) -> dict[str, Any]:
    """The parts of a host's config a login needs, as JSON (never the sudo password)."""
    ssh = config.ssh
    identity_file = str(ssh.identity_file) if ssh.identity_file else None
    return {"name": config.name, "address": config.address, "port": config.port,
            "user": config.user, "identity_file": identity_file,
            "known_hosts": str(ssh.known_hosts), "trust_on_first_use": ssh.trust_on_first_use,
            "jump_host": ssh.jump_host, "connect_timeout": ssh.connect_timeout,
            "command_timeout": ssh.command_timeout, "control_persist": ssh.control_persist}


def host_from_settings(data: dict[str, Any]) -> HostConfig:
    ssh = SshSettings(
        identity_file=Path(data["identity_file"]) if data["identity_file"] else None,
        known_hosts=Path(data["known_hosts"]), trust_on_first_use=data["trust_on_first_use"],
        jump_host=data["jump_host"], connect_timeout=data["connect_timeout"],
        command_timeout=data["command_timeout"], sudo_password=None,
        control_persist=data["control_persist"])
    return HostConfig(data["name"], data["address"], data["port"], data["user"], (), (), {}, ssh)


def peer_uid(sock: socket.socket) -> int:
    """The user id of the process at the other end of a Unix socket (Linux SO_PEERCRED)."""
    credentials = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("iII"))
    _, uid, _ = struct.unpack("iII", credentials)
    return int(uid)


def _exactly(sock: socket.socket, size: int) -> bytes:
    chunks, missing = [], size
    while missing:
        chunk = sock.recv(min(missing, 1 << 20))
        if not chunk:
            raise WireError(f"closed with {missing} of {size} bytes missing")
        chunks.append(chunk)
        missing -= len(chunk)
    return b"".join(chunks)
