"""The one quoting path: argv tuples and stdin payloads become shell text here and nowhere else.

Everything a step sends runs under ``/bin/sh`` on the host (dash on Debian and Ubuntu), fed the
whole batch on its stdin: through the connection keeper's root shell (root_shell.py) or through
``sudo /bin/sh -s``. Shell text is therefore never anyone's argv; what a command it starts gets
as arguments is. ``with_stdin`` keeps a payload (SQL holding a password, say) out of those too,
and ``run_as`` starts a command as another user without a shell in between.
"""

from __future__ import annotations

import base64
import shlex
from collections.abc import Iterable

from provisioner.secrets.values import Secret


def quote(value: str | int | Secret) -> str:
    """Quote one argument for POSIX sh; a Secret as its real value (commands go to the host,
    and the walk masks secrets in whatever output of theirs it shows)."""
    return shlex.quote(value.reveal() if isinstance(value, Secret) else str(value))


def join(*argv: str | int | Secret) -> str:
    """Join argv into a shell command line with every argument quoted."""
    return " ".join(quote(arg) for arg in argv)


def script(lines: Iterable[str]) -> str:
    """A multi-line shell fragment that stops at the first failing command."""
    return "set -e\n" + "\n".join(lines) + "\n"


def write_bytes_command(data: bytes, target: str) -> str:
    """Shell that writes data to target exactly, carried inline as base64 (no second transfer)."""
    encoded = base64.b64encode(data).decode("ascii")
    return f"printf '%s' {quote(encoded)} | base64 -d > {target}"


def run_as(user: str, *argv: str | int, directory: str = "/") -> str:
    """Shell running argv as ``user`` from ``directory``, in probes and actions alike.

    ``runuser -u`` (util-linux, Essential on Debian, so on every host, unlike sudo) sets user,
    groups, HOME and the user's limits through a PAM stack that asks root for nothing and
    registers no logind session, then execs argv without a shell: a nologin user works too.
    ``setpriv`` would skip PAM but keep root's HOME and limits. The command starts in
    ``directory`` (``/`` unless told), not in the script's, the login user's home, which a
    hardened host makes 0750; the subshell keeps the ``cd`` from the rest of the action.
    Secrets have no place in argv, which every user on the host may read: use with_stdin.
    """
    return f"( cd {quote(directory)} && exec runuser -u {quote(user)} -- {join(*argv)} )"


def with_stdin(command: str, *payload: str | Secret) -> str:
    """Shell running ``command`` with the payload's parts, joined, as its whole stdin.

    The payload is the argument of ``printf``, a builtin of dash and bash, so it lives in the
    memory of the script's own shell and a pipe, never in a program's argv (which ``ps`` shows
    to every user) nor in a file: no size limit of exec applies, and a Secret part is revealed
    into the payload only. A here-document would do as well under dash (a pipe, written by a
    forked shell when it exceeds the pipe buffer) but not under bash, which writes a large one
    to a file in /tmp, and it always ends with a newline and must pick a delimiter the payload
    never holds; printf carries the exact bytes. Shell text cannot hold a NUL: refused.
    """
    text = "".join(part.reveal() if isinstance(part, Secret) else part for part in payload)
    if "\0" in text:
        raise ValueError("a payload for a command's stdin cannot hold a NUL character: shell "
                         "text cannot carry one (encode the data, e.g. as base64)")
    return f"printf '%s' {shlex.quote(text)} | {command}"
