"""Messages between a run and a connection keeper: header and byte bodies survive the socket."""

from __future__ import annotations

import json
import os
import socket
from dataclasses import replace

import pytest

from provisioner.secrets.values import Secret
from provisioner.transport.keeper_wire import (
    LENGTH,
    WireError,
    host_from_settings,
    host_settings,
    peer_uid,
    receive_message,
    send_message,
)
from tests.unit.fakes import make_host


def test_a_message_arrives_with_its_header_and_bodies_intact() -> None:
    left, right = socket.socketpair()
    script = b"printf '%s\\n' \"$HOME\"\n" + bytes(range(256))

    send_message(left, {"op": "run", "timeout": 30.0}, script, b"")

    header, bodies = receive_message(right)
    assert (header["op"], header["timeout"], bodies) == ("run", 30.0, [script, b""])


def test_a_peer_that_closed_before_a_message_is_end_of_file() -> None:
    left, right = socket.socketpair()
    left.close()

    with pytest.raises(EOFError):
        receive_message(right)


def test_a_message_cut_off_inside_is_a_wire_error() -> None:
    left, right = socket.socketpair()
    left.sendall(LENGTH.pack(50) + b'{"bodies": []')
    left.close()

    with pytest.raises(WireError, match="missing"):
        receive_message(right)


def test_a_header_that_is_not_json_is_a_wire_error() -> None:
    left, right = socket.socketpair()
    left.sendall(LENGTH.pack(5) + b"hello")

    with pytest.raises(WireError, match="unreadable"):
        receive_message(right)


def test_host_settings_round_trip_without_the_sudo_password() -> None:
    base = make_host().config
    config = replace(base, ssh=replace(base.ssh, sudo_password=Secret("s3cr3t-sudo", "env:X")))

    written = json.dumps(host_settings(config))
    rebuilt = host_from_settings(json.loads(written))

    assert "s3cr3t-sudo" not in written
    assert (rebuilt.name, rebuilt.address, rebuilt.port, rebuilt.user) == (
        config.name, config.address, config.port, config.user)
    assert rebuilt.ssh == replace(config.ssh, sudo_password=None)


def test_peer_uid_is_the_user_at_the_other_end() -> None:
    left, _ = socket.socketpair()

    assert peer_uid(left) == os.getuid()
