"""The deploy lock of an app on one host: who holds it, since when, for which version and why.

It is a file on the host (``<state>/deploy.lock``), created with noclobber so two controllers
cannot both take it, holding key=value lines. A deploy that ends, fails or is interrupted
(Ctrl-C) removes it; one whose controller was killed leaves it with its details, and the next
deploy from the same controller machine finds that process gone and takes the lock over,
saying so. From another machine a held lock is an error naming its holder, and
``--force-unlock`` removes it.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass

from provisioner.commands import quote

#: Exit code of the acquire script when another deploy holds the lock.
HELD = 4
FIELDS = ("token", "action", "version", "who", "since", "controller", "pid", "message")


@dataclass(frozen=True)
class LockRecord:
    fields: Mapping[str, str]

    def describe(self) -> str:
        get = self.fields.get
        return (f"{get('action', 'deploy')} of {get('version', '?')} by {get('who', '?')} since "
                f"{get('since', '?')} (from {get('controller', '?')}, process "
                f"{get('pid', '?')}{', message: ' + get('message', '') if get('message') else ''})")

    def holder_is_gone(self) -> bool:
        """True when the holder ran on this machine and its process no longer exists."""
        if self.fields.get("controller") != socket.gethostname():
            return False
        pid = self.fields.get("pid", "")
        if not pid.isdigit():
            return False
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False


def parse_record(text: str) -> LockRecord:
    fields = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key in FIELDS:
            fields[key] = value
    return LockRecord(fields)


def render_record(fields: Mapping[str, str]) -> str:
    """key=value lines; a value never spans lines (a message's line breaks become spaces)."""
    return "".join(f"{key}={' '.join(str(fields.get(key, '')).split())}\n" for key in FIELDS)


def acquire(path: str, fields: Mapping[str, str], *, replace_token: str = "") -> str:
    """Shell taking the lock; exit HELD printing the holder's record when another has it.
    ``replace_token``: take over the lock only if it still holds that (stale) token."""
    record = quote(render_record(fields))
    directory = quote(path.rsplit("/", 1)[0])
    lock = quote(path)
    take_over = ""
    if replace_token:
        take_over = (f"if grep -qx {quote('token=' + replace_token)} {lock} 2>/dev/null; then "
                     f"printf '%s' {record} > {lock}.tmp && mv {lock}.tmp {lock} && exit 0; fi\n")
    return (f"mkdir -p {directory} || exit 1\n{take_over}"
            f"if ( set -C; printf '%s' {record} > {lock} ) 2>/dev/null; then exit 0; fi\n"
            f"cat {lock} 2>/dev/null; exit {HELD}")


def release(path: str, token: str) -> str:
    """Shell removing the lock only while it is this deploy's."""
    lock = quote(path)
    return f"if grep -qx {quote('token=' + token)} {lock} 2>/dev/null; then rm -f {lock}; fi"


def force_release(path: str) -> str:
    """Shell removing the lock whoever holds it, printing what it held."""
    lock = quote(path)
    return f"if [ -f {lock} ]; then cat {lock}; rm -f {lock}; else echo 'no lock held'; fi"
