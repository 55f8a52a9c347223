"""Handlers after a role's steps: which run, in what order, why, and never lost.

A change that notifies a handler is only half done until the handler ran: new config files on
disk, the service still running the old ones. So a notification is recorded on the host in the
same round trip as the change (a file per handler under HANDLER_ROOT), and the record is removed
in the round trip that runs the handler, after it succeeded. A run that fails between the two, or
whose login dies, leaves the record; the next run reads it in its first round trip and runs the
handler even though no file changes any more. Ansible forgets such handlers unless
``--force-handlers`` was given, and the host keeps serving its old configuration.

Of the handlers notified, one that another notified handler supersedes (a reload, when the
restart of the same service runs) is skipped, and its record is cleared with the one that runs.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from provisioner.change import Change
from provisioner.commands import join, quote
from provisioner.step import Handler

#: Where pending notifications live on the host: ``<root>/<role>/<handler>``, holding the label
#: of the step that notified it (masked, like everything the walk shows).
HANDLER_ROOT = "/var/lib/provisioner/handlers"
#: Seconds between two readiness checks of a handler that waits for its service.
READY_POLL_SECONDS = 0.5
#: Notifier labels a reason names before it says how many more there were.
NAMED_NOTIFIERS = 3


@dataclass(frozen=True)
class Notified:
    """A handler to run after its role, and why: the labels of the steps that notified it, or
    the record an earlier run left."""

    handler: Handler
    because: tuple[str, ...]
    #: Handlers whose records this one clears: itself and those it superseded.
    clears: tuple[str, ...]


def recorded_action(role: str, names: Sequence[str], notifier: str, action: str, *,
                    undo_on_failure: bool = False) -> str:
    """``action`` with ``names`` recorded as pending before it runs, so the change is never on
    the host without its record. With ``undo_on_failure`` (an all-or-nothing action: when it
    fails nothing changed) a record this action created is removed again when it fails; one an
    earlier run left always stays. A record path that is a symbolic link or not a plain file is
    refused, never written through, and so is a symbolic link on the way to it."""
    directory = quote(f"{HANDLER_ROOT}/{role}")
    linked = " || ".join(f"[ -L {quote(path)} ]" for path in
                         (posixpath.dirname(HANDLER_ROOT), HANDLER_ROOT, f"{HANDLER_ROOT}/{role}"))
    lines = [f"if {linked}; then echo {directory}': a symbolic link on the way; no handler "
             "record is written through one' >&2; exit 1; fi",
             f"{{ [ -d {directory} ] || mkdir -p {directory}; }} || exit 1"]
    undo = []
    for index, name in enumerate(names):
        record = quote(f"{HANDLER_ROOT}/{role}/{name}")
        lines += [f"if [ -L {record} ] || {{ [ -e {record} ] && [ ! -f {record} ]; }}; then "
                  f"echo {record}': not a plain file; no handler record is written to it' >&2; "
                  "exit 1; fi",
                  f"new{index}=; [ -e {record} ] || {{ printf '%s\\n' {quote(notifier)} > "
                  f"{record} || exit 1; new{index}=1; }}"]
        undo.append(f"[ -z \"$new{index}\" ] || rm -f {record}")
    if not undo_on_failure:
        return "\n".join([*lines, action])
    lines += [f"( {action}\n)", "rc=$?",
              f"if [ \"$rc\" -ne 0 ]; then {'; '.join(undo)}; fi", "exit \"$rc\""]
    return "\n".join(lines)


def clear_action(role: str, names: Sequence[str]) -> str:
    """Shell that forgets these records (handlers the role no longer has)."""
    return join("rm", "-f", *(f"{HANDLER_ROOT}/{role}/{name}" for name in names))


def pending_probe() -> str:
    """Read-only shell (builtins only, it travels in every first round trip): one line per
    pending record, ``role<TAB>handler<TAB>notifier``; symbolic links are not records."""
    return (f"for f in {HANDLER_ROOT}/*/*; do [ -f \"$f\" ] && [ ! -L \"$f\" ] || continue; "
            "d=${f%/*}; n=; IFS= read -r n < \"$f\"; "
            "printf '%s\\t%s\\t%s\\n' \"${d##*/}\" \"${f##*/}\" \"$n\"; done; true")


def parse_pending(output: str) -> dict[str, dict[str, str]]:
    """Role -> handler -> the label of the step that notified it in an earlier run."""
    pending: dict[str, dict[str, str]] = {}
    for line in output.splitlines():
        fields = line.split("\t", 2)  # the notifier's label is last and may hold a tab
        if len(fields) == 3 and fields[0] and fields[1]:
            pending.setdefault(fields[0], {})[fields[1]] = fields[2]
    return pending


def choose(handlers: Mapping[str, Handler], notified: Mapping[str, Sequence[str]]
           ) -> tuple[list[Notified], dict[str, str]]:
    """The handlers to run, in the role's order, and those skipped: name -> the one superseding it.

    Supersession follows chains (a restart supersedes a reload that supersedes a test), and a
    handler notified only through a record still counts."""
    wanted = [name for name in handlers if name in notified]
    superseded: dict[str, str] = {}
    for name in wanted:
        for covered in _covered_by(handlers, name):
            if covered in notified and covered != name and covered not in superseded:
                superseded[covered] = name
    running = [name for name in wanted if name not in superseded]
    chosen = [Notified(handlers[name], tuple(notified[name]),
                       (name, *sorted(o for o, by in superseded.items() if by == name)))
              for name in running]
    return chosen, superseded


def _covered_by(handlers: Mapping[str, Handler], name: str) -> set[str]:
    seen: set[str] = set()
    todo = list(handlers[name].supersedes)
    while todo:
        current = todo.pop()
        if current not in seen:
            seen.add(current)
            todo.extend(handlers[current].supersedes)
    return seen


def handler_script(role: str, notified: Notified) -> str:
    """The handler's action, then its readiness wait, then clearing its records."""
    handler = notified.handler
    parts = [f"( {handler.action}\n)"]
    if handler.ready is not None:
        parts.append(_ready_wait(handler))
    records = [f"{HANDLER_ROOT}/{role}/{name}" for name in notified.clears]
    parts.append(join("rm", "-f", *records))
    return " && ".join(parts)


def _ready_wait(handler: Handler) -> str:
    polls = max(1, int(handler.ready_timeout / READY_POLL_SECONDS))
    failure = quote(f"{handler.name}: not ready {handler.ready_timeout} s after it ran "
                    f"(checked with: {handler.ready})")
    return (f"{{ i=0; until ( {handler.ready}\n) >/dev/null 2>&1; do "
            f"if [ \"$i\" -ge {polls} ]; then echo {failure}; exit 1; fi; "
            f"i=$((i+1)); sleep {READY_POLL_SECONDS}; done; }}")


def because(notifiers: Sequence[str]) -> str:
    """Why a handler runs, for its report line."""
    named = ", ".join(notifiers[:NAMED_NOTIFIERS])
    more = len(notifiers) - NAMED_NOTIFIERS
    return f"notified by {named}" + (f" and {more} more" if more > 0 else "")


def left_pending(pending: Mapping[str, Mapping[str, str]], roles_in_run: set[str]
                 ) -> list[Change]:
    """Records this run keeps: their roles are not in it."""
    return [Change.ok(f"handler {name} of role {role}", "pending from an earlier run; it runs "
                      f"when role {role} runs")
            for role, names in pending.items() if role not in roles_in_run for name in names]


def stale_records(role: str, names: Sequence[str], check: bool) -> list[Change]:
    """What the walk says of records whose handler the role no longer has (removed, since
    nothing can run them)."""
    verb = "would remove" if check else "removed"
    return [Change.made(f"handler {name} of role {role}", "an earlier run recorded it as owed, "
                        f"but role {role} no longer has a handler of that name: {verb} its "
                        "record; check that the service runs its current configuration")
            for name in names]
