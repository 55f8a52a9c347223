"""A root shell a connection keeper holds open on its login, so later runs skip sshd and sudo.

Through a keeper, each round trip used to open a new SSH session and run sudo in it: on the host,
sshd forks a session and sudo reads its policy and runs PAM, about 8 ms of the host's CPU per
round trip on the sandbox machines, a quarter of a whole no-op probe, paid by every host of
every run. A keeper instead starts one root shell on its login at first use and hands it the
scripts of all later runs, one at a time. Each script still runs in a new ``/bin/sh`` with stdin
from /dev/null, so nothing one script sets (directory, variables, traps) reaches the next.

It is kept only when becoming root needs no password: a kept root shell would let any process of
the same user run as root through the keeper without knowing the sudo password.

Framing, on the shell's stdin: a line ``<length> <token>`` and the script's bytes. The shell
answers with the script's own output, then ``\\n<token> <exit code>\\n`` on stdout and
``\\n<token>\\n`` on stderr. The token is random per script, so no output can end an answer
early. The script is sent wrapped in ``{ ... }``: sh parses a brace group whole before running
any of it, so a script cut short by a dying connection is a syntax error that runs nothing.
"""

from __future__ import annotations

import secrets
import selectors
import shlex
import time
from collections.abc import Callable

import paramiko

from provisioner.errors import ConnectError
from provisioner.remote import Result

#: Runs as root, arguments: the token that says it started. mktemp -d makes its directory 0700.
DRIVER = r"""d=$(mktemp -d) || exit 1
trap 'rm -rf "$d"' EXIT
printf '%s\n' "$1"
while IFS=' ' read -r n t; do
  head -c "$n" >"$d/script" || exit 1
  /bin/sh "$d/script" </dev/null
  printf '\n%s %s\n' "$t" "$?"
  printf '\n%s\n' "$t" >&2
done
"""


def start_command(user: str, ready: str) -> str:
    """The command that starts the shell as root (through sudo unless logged in as root); it
    prints ``ready`` once it runs. Only for hosts whose sudo needs no password."""
    shell = f"/bin/sh -c {shlex.quote(DRIVER)} provisioner-root-shell {shlex.quote(ready)}"
    return shell if user == "root" else f"sudo -n -H {shell}"


#: Given stdout and stderr so far: has the answer fully arrived?
Finished = Callable[[bytes, bytes], bool]


class ShellGone(ConnectError):
    """The kept root shell had ended before a script was sent: nothing ran, another way is safe."""


class RootShell:
    """One long-lived root shell on a login's channel; one script at a time (callers lock)."""

    def __init__(self, channel: paramiko.Channel, host: str) -> None:
        self._channel = channel
        self._host = host
        self.usable = True

    @classmethod
    def start(cls, channel: paramiko.Channel, user: str, host: str, timeout: float) -> RootShell:
        """Start the shell on a new channel of the login and wait until it runs as root.

        ShellGone when it does not come up (sudo refused, the host closed the channel): the
        caller then runs its scripts the ordinary way, which reports any refusal properly.
        """
        shell = cls(channel, host)
        ready = secrets.token_hex(16).encode() + b"\n"
        try:
            channel.exec_command(start_command(user, ready.decode().strip()))
            out, _ = shell._read_until(lambda out, err: out.endswith(ready), timeout)
        except (OSError, paramiko.SSHException, ConnectError) as error:
            shell.close()
            raise ShellGone(f"the root shell on {host} did not start: {error}") from None
        if out != ready:
            shell.close()
            raise ShellGone(f"the root shell on {host} printed something unexpected first")
        return shell

    def run(self, script: bytes, timeout: float) -> Result:
        """Run one script; ShellGone if it was never sent, ConnectError if its fate is unknown."""
        if not self.usable or self._channel.closed or self._channel.exit_status_ready():
            self.close()
            raise ShellGone(f"the root shell on {self._host} has ended")
        token = secrets.token_hex(16).encode()
        wrapped = b"{\n" + script + b"\n}\n"
        try:
            self._channel.sendall(b"%d %s\n" % (len(wrapped), token) + wrapped)
        except (OSError, paramiko.SSHException):
            self.close()  # a script cut short is a syntax error on the host: nothing ran
            raise ShellGone(f"the root shell on {self._host} stopped taking scripts") from None
        try:
            out, err = self._read_until(lambda out, err: answered(out, err, token) is not None,
                                        timeout)
        except TimeoutError as error:
            self.close()
            raise ConnectError(f"A command on {self._host} timed out ({error}); raise "
                               "ssh.command_timeout in the inventory if it needs longer.") from None
        except (OSError, paramiko.SSHException, ConnectError) as error:
            self.close()
            raise ConnectError(f"The SSH connection to {self._host} failed while running a "
                               f"command: {error}. Check the host and run again.") from None
        found = answered(out, err, token)
        assert found is not None
        return found

    def close(self) -> None:
        self.usable = False
        self._channel.close()

    def _read_until(self, finished: Finished, timeout: float) -> tuple[bytes, bytes]:
        """Read stdout and stderr together (neither pipe may fill) until ``finished`` says so."""
        channel = self._channel
        deadline = time.monotonic() + timeout
        out, err = bytearray(), bytearray()
        with selectors.DefaultSelector() as waiting:
            waiting.register(channel, selectors.EVENT_READ)
            while True:
                while channel.recv_ready():
                    out += channel.recv(65536)
                while channel.recv_stderr_ready():
                    err += channel.recv_stderr(65536)
                if finished(bytes(out), bytes(err)):
                    return bytes(out), bytes(err)
                if channel.exit_status_ready() and not channel.recv_ready() and \
                        not channel.recv_stderr_ready():
                    raise ConnectError(f"the root shell ended (exit code "
                                       f"{channel.recv_exit_status()}): "
                                       f"{err.decode('utf-8', 'replace').strip()[-300:]}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"command still running after {timeout:.0f} s")
                waiting.select(min(0.5, left))


def answered(out: bytes, err: bytes, token: bytes) -> Result | None:
    """The script's result once both of its end marks have arrived, else None."""
    err_mark = b"\n" + token + b"\n"
    if not err.endswith(err_mark) or not out.endswith(b"\n"):
        return None
    start = out.rfind(b"\n" + token + b" ")
    if start < 0:
        return None
    code = out[start + len(token) + 2:-1]
    if not code.isdigit():
        return None
    return Result(out[:start].decode("utf-8", "replace"),
                  err[:-len(err_mark)].decode("utf-8", "replace"), int(code))
