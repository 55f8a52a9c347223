"""What a path is on the host: the probe of one path, the probe of many at once, one parser.

One probe per path prints type, owner, group, mode and SHA-256 (and the content, base64, only
when a step needs it); for a missing path, how many of the directories above it are missing
too, so a write can say which it creates. The grouped probe answers many paths in the same
format with three process starts, which is what keeps a converged host's check cheap.
"""

from __future__ import annotations

import base64
import posixpath
from collections.abc import Sequence
from dataclasses import dataclass

from provisioner.commands import quote
from provisioner.step import GroupedProbe, ProbeGroup


@dataclass(frozen=True)
class FileState:
    kind: str
    owner: str
    group: str
    mode: int
    sha256: str
    content: bytes | None = None


#: Shell counting into $n the missing directories above the absent path $p (builtins only, so
#: a converged host, whose paths all exist, never runs it).
_COUNT_MISSING_DIRECTORIES = (
    'n=0; case $p in */*) d=${p%/*} ;; *) d= ;; esac; '
    'while [ -n "$d" ] && [ ! -d "$d" ]; do n=$((n + 1)); '
    'case $d in */*) d=${d%/*} ;; *) d= ;; esac; done')



def probe_path(path: str, with_content: bool = False) -> str:
    """Read-only shell printing ``kind|owner|group|mode|sha256`` (+ base64 content), or
    ``absent`` (``absent N`` when the N deepest directories above the path are missing too).

    Two programs per existing path (stat, sha256sum), no command substitution and no pipe: a
    converged host runs this once per managed file, so every process start saved counts.
    sha256sum's line carries the path after the digest; the parser keeps the digest only.
    """
    target = quote(path)
    content = f"; printf 'content:'; base64 -w0 -- {target}" if with_content else ""
    return (f"if [ -e {target} ]; then stat --printf '%F|%U|%G|%a|' -- {target}; "
            f"if [ -f {target} ]; then sha256sum -- {target}{content}; "
            f"else echo; fi; else p={target}; {_COUNT_MISSING_DIRECTORIES}; "
            'if [ "$n" -eq 0 ]; then echo absent; else echo "absent $n"; fi; fi')


def _is_absent(first_line: str) -> bool:
    return first_line == "absent" or first_line.startswith("absent ")


def parse_path_state(output: str) -> FileState | None:
    lines = output.split("\n")
    if not lines[0] or _is_absent(lines[0]):
        return None
    kind, owner, group, mode, checksum = lines[0].split("|", 4)
    sha = checksum.split()[0].lstrip("\\") if checksum.strip() else ""  # "\" marks escaped names
    content = None
    if len(lines) > 1 and lines[1].startswith("content:"):
        content = base64.b64decode(lines[1].removeprefix("content:"))
    return FileState(kind, owner, group, int(mode, 8), sha, content)


def directories_above(path: str) -> list[str]:
    """Every directory above path, shallowest first, without ``/``: what a write may create."""
    parts = posixpath.normpath(posixpath.dirname(path)).split("/")
    return ["/".join(parts[:end]) for end in range(2, len(parts) + 1) if parts[1:end] != [""]]


def missing_directories(path: str, output: str) -> list[str]:
    """The directories above path that its probe found missing, shallowest first."""
    words = output.split("\n", 1)[0].split(" ")
    if words[0] != "absent" or len(words) != 2 or not words[1].isdigit() or words[1] == "0":
        return []
    return directories_above(path)[-int(words[1]):]


def probe_paths(paths: Sequence[str]) -> str:
    """Read-only shell answering probe_path (without content) for many paths at once.

    One stat for the paths that exist (``-e`` follows symlinks, as probe_path's does), then one
    sha256sum for the regular files among them (a FIFO or device must never be read); the tests
    are shell builtins. NUL separators keep any file name intact; a double NUL (impossible inside
    stat's part) ends stat's part. A missing path below missing directories is answered in that
    part too, as ``absent N``.
    """
    targets = " ".join(quote(path) for path in paths)
    return (f"set --; for p in {targets}; do if [ -e \"$p\" ]; then set -- \"$@\" \"$p\"; "
            f"else {_COUNT_MISSING_DIRECTORIES}; if [ \"$n\" -gt 0 ]; then "
            "printf '%s\\0absent %s\\0' \"$p\" \"$n\"; fi; fi; done; "
            "if [ \"$#\" -gt 0 ]; then stat --printf '%n\\0%F|%U|%G|%a\\0' -- \"$@\"; fi; "
            f"printf '\\0\\0'; set --; for p in {targets}; do if [ -f \"$p\" ]; then "
            'set -- "$@" "$p"; fi; done; if [ "$#" -gt 0 ]; then sha256sum -z -- "$@"; fi')


def split_paths_output(output: str, paths: Sequence[str]) -> dict[str, str]:
    """probe_paths output -> per path, probe_path's format (the digest without the file name
    sha256sum prints after it), so parse_path_state reads both alike."""
    attributes_part, _, checksums_part = output.partition("\0\0")
    fields = attributes_part.split("\0")
    attributes = dict(zip(fields[0::2], fields[1::2], strict=False))
    checksums = {record[66:]: record[:64] for record in checksums_part.split("\0")
                 if len(record) > 66 and record[64:66] in ("  ", " *")}
    return {path: _path_answer(attributes.get(path), checksums.get(path, "")) for path in paths}


def _path_answer(attributes: str | None, checksum: str) -> str:
    if attributes is None:
        return "absent\n"
    return f"{attributes}\n" if _is_absent(attributes) else f"{attributes}|{checksum}\n"


#: File probes answered together: thirty managed files cost three process starts, not sixty.
PATHS = ProbeGroup("paths", probe_paths, split_paths_output)


def grouped_path_probe(path: str, with_content: bool = False) -> GroupedProbe | None:
    """A path step's probe as a PATHS item; a probe that must also read the content is not."""
    return None if with_content else GroupedProbe(PATHS, path)

