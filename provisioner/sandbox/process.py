"""Runs host commands from argv lists and turns their failures into readable SandboxErrors."""

import os
import shlex
import subprocess
from collections.abc import Mapping, Sequence

from provisioner.sandbox.errors import SandboxError

OUTPUT_TAIL_LINES = 15


def run(
    argv: Sequence[str],
    *,
    input_text: str | None = None,
    extra_env: Mapping[str, str] | None = None,
    timeout: float = 900,
) -> str:
    """Run argv, return its stdout; raise SandboxError with the output's tail if it fails.

    Host-side failures here (a bridge that cannot be made, debootstrap losing the mirror) are
    environment problems the user must see verbatim, so the message keeps the command and its
    last lines of output rather than a traceback.
    """
    env = {**os.environ, **extra_env} if extra_env else None
    try:
        completed = subprocess.run(
            list(argv), input=input_text, capture_output=True, text=True, env=env,
            timeout=timeout, check=False,
        )
    except subprocess.TimeoutExpired as error:
        raise SandboxError(f"`{shlex.join(argv)}` did not finish within {timeout:g} s.") from error
    except FileNotFoundError as error:
        raise SandboxError(f"`{argv[0]}` is not installed on this machine; `invoke sandbox.up` "
                           "installs the host tools the sandbox needs.") from error
    if completed.returncode != 0:
        raise SandboxError(describe_failure(argv, completed))
    return completed.stdout


def succeeds(argv: Sequence[str], timeout: float = 60) -> bool:
    """Whether argv exits 0; for probes such as `iptables -C` whose failure is an answer.

    A program that is not installed did not succeed: on a machine where the sandbox never ran,
    there is no NAT rule to find and no iptables to find it with, and cleaning up must not fail.
    """
    try:
        completed = subprocess.run(
            list(argv), capture_output=True, text=True, timeout=timeout, check=False
        )
    except FileNotFoundError:
        return False
    return completed.returncode == 0


def describe_failure(argv: Sequence[str], completed: "subprocess.CompletedProcess[str]") -> str:
    """One paragraph naming the command, its exit code and the tail of what it printed."""
    output = (completed.stdout or "") + (completed.stderr or "")
    tail = "\n".join(output.rstrip().splitlines()[-OUTPUT_TAIL_LINES:])
    return f"`{shlex.join(argv)}` failed with exit code {completed.returncode}:\n{tail}"
