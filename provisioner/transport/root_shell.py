"""A root shell a connection keeper holds open on its login, so later runs skip sshd and sudo.

A new SSH session per round trip with sudo in it would cost every round trip this: on the host,
sshd forks a session and sudo reads its policy and runs PAM, about 8 ms of the host's CPU per
round trip on the sandbox machines, a quarter of a whole no-op probe, paid by every host of
every run. A keeper instead starts one root shell on its login at first use and hands it the
scripts of all later runs, one at a time. Each script still runs in a new ``/bin/sh``, so nothing
one script sets (directory, variables, traps) reaches the next, and its stdin is emptied first.

It is kept only when becoming root needs no password: a kept root shell would let any process of
the same user run as root through the keeper without knowing the sudo password.

Framing, on the shell's stdin: a line ``<length> <token>`` and the script's bytes. The shell
answers with the script's own output, then ``\\n<token> <exit code>\\n`` on stdout and
``\\n<token>\\n`` on stderr. The token is random per script, so no output can end an answer
early. The script is sent as one brace group: sh reads a brace group whole before running any of
it, so a script cut short by a dying connection is a syntax error that runs nothing. Output that
arrives outside an answer (a process a script left behind, still writing) retires the shell.
"""

from __future__ import annotations

import re
import secrets
import shlex

import paramiko

from provisioner.errors import CommandTimedOut, ConnectError, ShellGone
from provisioner.transport.channel import Finished, read_channel
from provisioner.transport.remote import Result, StderrLines, lost_message, timed_out_message

#: Runs as root; its argument is the token that says it started. Each script reaches a new sh
#: through a pipe and, being one brace group, is read whole before any of it runs.
DRIVER = r"""printf '%s\n' "$1"
while IFS=' ' read -r n t; do
  head -c "$n" | /bin/sh
  printf '\n%s %s\n' "$t" "$?"
  printf '\n%s\n' "$t" >&2
done
"""


def start_command(user: str, ready: str) -> str:
    """The command that starts the shell as root (through sudo unless logged in as root); it
    prints ``ready`` once it runs. Only for hosts whose sudo needs no password."""
    shell = f"/bin/sh -c {shlex.quote(DRIVER)} provisioner-root-shell {shlex.quote(ready)}"
    return shell if user == "root" else f"sudo -n -H {shell}"


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
        token = secrets.token_hex(16)
        ready = token.encode() + b"\n"
        try:
            channel.exec_command(start_command(user, token))
            out, _ = shell._read_until(lambda out, err: out.endswith(ready), timeout)
        except (OSError, paramiko.SSHException, ConnectError) as error:
            shell.close()
            raise ShellGone(f"the root shell on {host} did not start: {error}") from None
        if out != ready:
            shell.close()
            raise ShellGone(f"the root shell on {host} printed something unexpected first")
        return shell

    def run(self, script: bytes, timeout: float,
            stderr_lines: StderrLines | None = None) -> Result:
        """Run one script; ShellGone if it was never sent, ConnectError if its fate is unknown
        (CommandTimedOut past ``timeout``: the caller must then abort the login, so nothing
        still queued on it reaches the host later)."""
        channel = self._channel
        if not self.usable or channel.closed or channel.exit_status_ready() or \
                channel.recv_ready() or channel.recv_stderr_ready():
            self.close()  # ended, or something wrote to it between scripts: a new one next time
            raise ShellGone(f"the root shell on {self._host} has ended")
        token = secrets.token_hex(16).encode()
        try:
            channel.sendall(frame(script, token))
        except (OSError, paramiko.SSHException):
            self.close()  # a script cut short is a syntax error on the host: nothing ran
            raise ShellGone(f"the root shell on {self._host} stopped taking scripts") from None
        try:
            out, err = self._read_until(lambda out, err: answered(out, err, token) is not None,
                                        timeout, stderr_lines)
        except TimeoutError as error:
            self.close()
            raise CommandTimedOut(timed_out_message(self._host, error)) from None
        except (OSError, paramiko.SSHException, ConnectError) as error:
            self.close()
            transport = channel.get_transport()
            if transport is None or not transport.is_active():
                raise ConnectError(lost_message(self._host)) from None
            raise ConnectError(f"The SSH connection to {self._host} failed while running a "
                               f"command: {error}. Check the host and run again.") from None
        found = answered(out, err, token)
        assert found is not None
        result, stray = found
        if stray:
            self.close()
        return result

    def close(self) -> None:
        self.usable = False
        self._channel.close()

    def _read_until(self, finished: Finished, timeout: float,
                    stderr_lines: StderrLines | None = None) -> tuple[bytes, bytes]:
        """Read until ``finished`` says so; ConnectError if the shell ends first."""
        out, err = read_channel(self._channel, timeout, finished, stderr_lines)
        if not finished(out, err):
            raise ConnectError(f"the root shell ended (exit code "
                               f"{self._channel.recv_exit_status()}): "
                               f"{err.decode('utf-8', 'replace').strip()[-300:]}")
        return out, err


def frame(script: bytes, token: bytes) -> bytes:
    """A script as the shell's driver reads it: the length line, then one brace group whose
    first act is to leave the pipe it came through."""
    wrapped = b"{\nexec </dev/null\n" + script + b"\n}\n"
    return b"%d %s\n" % (len(wrapped), token) + wrapped


#: How far back from the end of the output an answer's end mark is looked for. Only a stray
#: writer's burst can follow a mark; searching all of a long output (apt's) after every read
#: would take quadratic time.
MARK_WINDOW = 1 << 16


def answered(out: bytes | bytearray, err: bytes | bytearray,
             token: bytes) -> tuple[Result, bool] | None:
    """The script's result once both of its end marks have arrived, else None; and whether
    anything followed a mark (someone else writing to the shell's output: it must go)."""
    out_mark = re.compile(b"\n" + re.escape(token) + rb" (\d+)\n").search(
        out, max(0, len(out) - MARK_WINDOW))
    err_mark = b"\n" + token + b"\n"
    err_at = err.find(err_mark, max(0, len(err) - MARK_WINDOW))
    if out_mark is None or err_at < 0:
        return None
    result = Result(out[:out_mark.start()].decode("utf-8", "replace"),
                    err[:err_at].decode("utf-8", "replace"), int(out_mark.group(1)))
    return result, out_mark.end() < len(out) or err_at + len(err_mark) < len(err)
