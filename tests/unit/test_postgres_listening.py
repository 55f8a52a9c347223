"""Listening sockets from /proc/net/tcp{,6}: what the postgres and pgbouncer specs read instead of
``ss``, which the minimal image lacks."""

from __future__ import annotations

from roles.postgres.listening import listens, parse_listening

TCP = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1538 00000000:0000 0A 00000000:00000000 00:00000000 00000000   105        0 1 1
   1: 0B004D0A:1920 00000000:0000 0A 00000000:00000000 00:00000000 00000000   105        0 2 1
   2: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 3 1
   3: 0100007F:1538 0100007F:D0A2 01 00000000:00000000 00:00000000 00000000   105        0 4 1
"""
TCP6 = """\
  sl  local_address                         remote_address                        st tx_queue
   0: 00000000000000000000000001000000:1538 00000000000000000000000000000000:0000 0A 00000000
   1: 00000000000000000000000000000000:0016 00000000000000000000000000000000:0000 0A 00000000
   2: B80D0120000000000000000001000000:1920 00000000000000000000000000000000:0000 0A 00000000
"""


def test_listening_ipv4_sockets_are_read_with_their_address_and_port() -> None:
    assert parse_listening(TCP) == {("127.0.0.1", 5432), ("10.77.0.11", 6432), ("0.0.0.0", 22)}


def test_listening_ipv6_sockets_are_read_word_by_word() -> None:
    assert parse_listening(TCP6) == {("::1", 5432), ("::", 22), ("2001:db8::1", 6432)}


def test_an_established_connection_is_not_listening() -> None:
    assert ("127.0.0.1", 53410) not in parse_listening(TCP)


def test_a_wildcard_socket_serves_every_address_of_its_family() -> None:
    sockets = parse_listening(TCP + TCP6)

    assert listens(sockets, "10.0.0.9", 22) and listens(sockets, "fd00::9", 22)
    assert listens(sockets, "127.0.0.1", 5432)
    assert not listens(sockets, "10.77.0.11", 5432)
