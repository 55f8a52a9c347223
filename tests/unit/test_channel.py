"""Reading a command's output off an SSH channel: nothing it wrote is lost."""

from __future__ import annotations

import os
import time

import pytest

from provisioner.transport import channel as channel_module
from provisioner.transport.channel import read_channel


class LateTailChannel:
    """A channel whose exit status arrives before the last of the output, as sshd may send it:
    each poll hands over the next event (exit status, then the tail, then EOF)."""

    def __init__(self) -> None:
        self._read_end, self._write_end = os.pipe()
        os.write(self._write_end, b"x")  # always readable: the selector never waits long
        self.events = ["exit", "tail", "eof"]
        self.exited = self.eof_received = self.closed = False
        self.buffer = b"head\n"

    def fileno(self) -> int:
        return self._read_end

    def _advance(self) -> None:
        if self.events and not self.buffer:
            event = self.events.pop(0)
            if event == "exit":
                self.exited = True
            elif event == "tail":
                self.buffer = b"tail\n"
            else:
                self.eof_received = True

    def recv_ready(self) -> bool:
        return bool(self.buffer)

    def recv(self, size: int) -> bytes:
        data, self.buffer = self.buffer, b""
        return data

    def recv_stderr_ready(self) -> bool:
        return False

    def recv_stderr(self, size: int) -> bytes:
        return b""

    def exit_status_ready(self) -> bool:
        self._advance()
        return self.exited


def test_output_that_arrives_after_the_exit_status_is_still_read() -> None:
    out, err = read_channel(LateTailChannel(), timeout=5)  # type: ignore[arg-type]
    assert out == b"head\ntail\n" and err == b""


class HeldOpenChannel(LateTailChannel):
    """A command that exited while a process it left in the background keeps its output open:
    the exit status comes, the end of output never does."""

    def __init__(self) -> None:
        super().__init__()
        self.events = ["exit", "tail"]


def test_a_command_whose_background_process_holds_the_output_open_ends_after_a_grace(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(channel_module, "TAIL_GRACE", 0.2)
    started = time.monotonic()
    out, _ = read_channel(HeldOpenChannel(), timeout=30)  # type: ignore[arg-type]
    assert out == b"head\ntail\n"
    assert time.monotonic() - started < 5
