"""Change: what one step did or would do, and the unified diff that shows it."""

from __future__ import annotations

import difflib
from dataclasses import dataclass

#: Files larger than this are summarised instead of diffed, like Ansible's dst_larger.
MAX_DIFF_BYTES = 256 * 1024


@dataclass(frozen=True)
class Change:
    """The outcome of one step; ``reason`` explains it either way and never lies."""

    label: str
    changed: bool
    reason: str
    diff: str | None = None
    failed: bool = False
    duration: float = 0.0
    #: A failure the role decided on (step.Refused): nothing was sent, the run stops here.
    refused: bool = False

    @classmethod
    def ok(cls, label: str, reason: str) -> Change:
        return cls(label, False, reason)

    @classmethod
    def made(cls, label: str, reason: str, diff: str | None = None) -> Change:
        return cls(label, True, reason, diff)

    @classmethod
    def failure(cls, label: str, reason: str) -> Change:
        return cls(label, False, reason, failed=True)

    @classmethod
    def refusal(cls, label: str, reason: str) -> Change:
        return cls(label, False, reason, failed=True, refused=True)

    @property
    def status(self) -> str:
        """One word for the report: refused, failed, changed or ok."""
        if self.refused:
            return "refused"
        if self.failed:
            return "failed"
        return "changed" if self.changed else "ok"


def unified_diff(path: str, before: bytes | None, after: bytes) -> str:
    """A unified diff of a file's content; binary or huge content gets a one-line summary."""
    if max(len(before or b""), len(after)) > MAX_DIFF_BYTES:
        limit = MAX_DIFF_BYTES // 1024
        return f"--- {path}\n+++ {path}\n(content larger than {limit} KiB, not shown)\n"
    try:
        if b"\x00" in (before or b"") or b"\x00" in after:
            raise UnicodeDecodeError("utf-8", b"", 0, 1, "NUL byte")
        old = (before or b"").decode("utf-8").splitlines(keepends=True)
        new = after.decode("utf-8").splitlines(keepends=True)
    except UnicodeDecodeError:
        return f"--- {path}\n+++ {path}\n(binary content, not shown)\n"
    from_name = f"{path} (current)" if before is not None else "/dev/null"
    lines = difflib.unified_diff(old, new, from_name, f"{path} (desired)")
    return "".join(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n"
                   for line in lines)
