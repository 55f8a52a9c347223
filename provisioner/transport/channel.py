"""Reading what a command on an SSH channel writes, for direct logins and kept root shells alike."""

from __future__ import annotations

import selectors
import time
from collections.abc import Callable

import paramiko

from provisioner.transport.remote import StderrLines

#: Given stdout and stderr so far: has the awaited answer fully arrived? (Asked after every read
#: that brought something, with the growing buffers themselves: no copies of long output.)
Finished = Callable[[bytes | bytearray, bytes | bytearray], bool]


def read_channel(channel: paramiko.Channel, timeout: float,
                 finished: Finished = lambda out, err: False,
                 stderr_lines: StderrLines | None = None) -> tuple[bytes, bytes]:
    """Stdout and stderr, read together so neither pipe can fill and deadlock, until
    ``finished`` says so or the command has exited and all it wrote is read; TimeoutError
    past ``timeout``.

    A selector, not select.select: a keeper holding many logins may own descriptors past 1024.
    """
    deadline = time.monotonic() + timeout
    out, err = bytearray(), bytearray()
    told = 0  # how much of err stderr_lines has heard
    last_data = time.monotonic()
    with selectors.DefaultSelector() as waiting:
        waiting.register(channel, selectors.EVENT_READ)
        while True:
            arrived = len(out) + len(err)
            while channel.recv_ready():
                out += channel.recv(65536)
            while channel.recv_stderr_ready():
                err += channel.recv_stderr(65536)
            if len(out) + len(err) > arrived:
                last_data = time.monotonic()
            if stderr_lines is not None:
                told = _tell_lines(err, told, stderr_lines)
            if (len(out) + len(err) > arrived and finished(out, err)) or \
                    _all_read(channel, last_data):
                return bytes(out), bytes(err)
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"command still running after {timeout:.0f} s")
            waiting.select(min(0.5, left, TAIL_GRACE))


#: Seconds after the exit status in which output may still arrive when the host sends no end
#: of output: a process the command left in the background (``daemon &``) holds its stdout open.
TAIL_GRACE = 1.0


def _all_read(channel: paramiko.Channel, last_data: float) -> bool:
    """The command exited and all it wrote has arrived.

    The exit status alone is not enough: sshd may send it while output the command wrote just
    before exiting is still on its way (4 in 400 answers of 180 KB came back cut off under load),
    so the end of the output (EOF, or the channel closed) must have arrived too, or, when a
    background process keeps the output open, nothing for TAIL_GRACE seconds."""
    if not channel.exit_status_ready() or channel.recv_ready() or channel.recv_stderr_ready():
        return False
    ended = bool(channel.eof_received) or bool(channel.closed)
    return ended or time.monotonic() - last_data >= TAIL_GRACE


def _tell_lines(err: bytearray, told: int, stderr_lines: StderrLines) -> int:
    """Hand on the complete lines after ``told``; returns where the next one starts."""
    end = err.rfind(b"\n", told)
    if end < 0:
        return told
    for line in bytes(err[told:end]).split(b"\n"):
        stderr_lines(line.decode("utf-8", "replace"))
    return end + 1
