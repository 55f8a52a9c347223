"""apt sources: the host's entries read, and a deb822 source written only if apt can use it.

A role adding a source (a security archive, a vendor's repository) needs to know what the
host's own sources already serve, so the probe reads every entry apt would (one-line ``deb``
lines and deb822 stanzas) besides the state of the role's own file. A new or changed source
goes live only if ``apt-get update --error-on=any`` then fetches every source without an
error: apt exits 0 on a failed fetch otherwise, and a source it cannot use would leave the host
without the packages or fixes the role reports it has.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from provisioner.commands import quote
from provisioner.ops.apt import apt_command
from provisioner.ops.file_writes import DesiredFile
from provisioner.ops.files import plan_file
from provisioner.ops.path_state import FileState, parse_path_state, probe_path
from provisioner.step import Plan

#: Every file apt reads its sources from.
SOURCE_FILES = ("/etc/apt/sources.list", "/etc/apt/sources.list.d/*.list",
                "/etc/apt/sources.list.d/*.sources")
#: The distributions' archive keys, which sign their mirrors and security archives alike.
ARCHIVE_KEYRINGS = {"debian": "/usr/share/keyrings/debian-archive-keyring.gpg",
                    "ubuntu": "/usr/share/keyrings/ubuntu-archive-keyring.gpg"}
#: The lists refreshed after the sources changed, once the dpkg lock is free (ops.apt says who
#: holds it while it waits).
_APT_UPDATE = apt_command("update")
#: Fails on any source it could not fetch (apt >= 2.1.16: Debian 12, Ubuntu 22.04 and later).
_APT_UPDATE_STRICT = apt_command("update --error-on=any")
_OWN_FILE_MARK = "--- ours\n"


@dataclass
class AptEntry:
    """One apt source (a one-line ``deb`` entry or a deb822 stanza), as far as it was read."""

    uris: list[str] = field(default_factory=list)
    suites: list[str] = field(default_factory=list)
    components: list[str] = field(default_factory=list)
    #: deb822's Types (empty for a one-line entry, which is always ``deb``).
    types: list[str] = field(default_factory=list)
    #: deb822's ``Enabled: no`` turns a stanza off.
    enabled: bool = True


def parse_apt_entries(lines: Sequence[str]) -> list[AptEntry]:
    """Entries from ``deb ...``/``URIs:``/``Suites:``/``Components:`` lines (facts.apt_sources,
    probe_sources).

    A blank line ends a deb822 stanza; where the lines carry no boundaries (facts), a field
    seen twice starts a new one.
    Only what apt fetches packages from is returned: a stanza of Types ``deb-src`` alone, or
    ``Enabled: no``, is left out.
    """
    entries: list[AptEntry] = []
    current: AptEntry | None = None
    seen: set[str] = set()
    for raw in lines:
        line = raw.split("#", 1)[0].strip()
        if not raw.strip():  # a blank line ends a deb822 stanza (probe_sources keeps them)
            current = None
            continue
        if line.startswith("deb ") or line.startswith("deb\t"):
            words = [word for word in _drop_options(line).split() if word]
            if len(words) >= 3:
                entries.append(AptEntry([words[1]], [words[2]], words[3:]))
            current = None
            continue
        key, _, value = line.partition(":")
        name = _DEB822_FIELDS.get(key.strip().lower())
        if name is None:
            continue
        if current is None or name in seen:
            current, seen = AptEntry(), set()
            entries.append(current)
        seen.add(name)
        if name == "enabled":
            current.enabled = value.strip().lower() not in ("no", "false", "0")
        else:
            getattr(current, name).extend(value.split())
    return [entry for entry in entries if (entry.uris or entry.suites) and entry.enabled
            and (not entry.types or "deb" in entry.types)]


#: deb822 field names (case-insensitive, as apt reads them) -> AptEntry attributes.
_DEB822_FIELDS = {"uris": "uris", "suites": "suites", "components": "components",
                  "types": "types", "enabled": "enabled"}


def _drop_options(line: str) -> str:
    """``deb [arch=amd64 signed-by=...] URI ...`` -> ``deb  URI ...``."""
    start, end = line.find("["), line.find("]")
    return line[:start] + line[end + 1:] if 0 <= start < end else line


def main_mirror(entries: Sequence[AptEntry], codename: str) -> AptEntry | None:
    """The http(s) entry serving the release's main suite from the distribution's own archive:
    first one whose URI also serves ``<codename>-updates`` (Debian's and Ubuntu's archives do),
    then one whose path ends in /debian or /ubuntu; a third-party repository naming the
    codename too (Docker's, PostgreSQL's) is never taken for it."""
    candidates = []
    for entry in entries:
        web = [uri.rstrip("/") for uri in entry.uris if uri.startswith(("http://", "https://"))]
        if codename in entry.suites and web and not web[0].endswith("-security"):
            candidates.append(AptEntry([web[0]], entry.suites, entry.components))
    with_updates = {uri.rstrip("/") for entry in entries if f"{codename}-updates" in entry.suites
                    for uri in entry.uris}
    for fits in (lambda uri: uri in with_updates,
                 lambda uri: uri.endswith(("/debian", "/ubuntu"))):
        found = next((entry for entry in candidates if fits(entry.uris[0])), None)
        if found is not None:
            return found
    return None


def archive_keyring(os_id: str) -> str:
    """The keyring of the distribution's own archive (Debian's for a derivative not listed)."""
    return ARCHIVE_KEYRINGS.get(os_id, ARCHIVE_KEYRINGS["debian"])


def render_deb822_source(uri: str, suites: Sequence[str], components: Sequence[str],
                         signed_by: str, comment: str = "") -> str:
    """One deb822 stanza; ``comment`` (one line) says who manages the file and why."""
    header = f"# {comment}\n" if comment else ""
    return (f"{header}Types: deb\nURIs: {uri}\nSuites: {' '.join(suites)}\n"
            f"Components: {' '.join(components or ['main'])}\nSigned-By: {signed_by}\n")


def render_one_line_source(uri: str, suites: Sequence[str], components: Sequence[str],
                           signed_by: str, comment: str = "") -> str:
    """One ``deb [signed-by=...] URI SUITE COMPONENTS`` line per suite, in a ``.list`` file:
    the format every tool of a Debian 12 host reads (Lynis 3.0.8's PKGS-7388 finds a security
    archive only there)."""
    header = f"# {comment}\n" if comment else ""
    parts = " ".join(components or ["main"])
    return header + "".join(f"deb [signed-by={signed_by}] {uri} {suite} {parts}\n"
                            for suite in suites)


def probe_sources(own: str, with_content: bool = False) -> str:
    """Read-only shell printing the entry lines of every source file but ``own``, then
    probe_path's answer for ``own``; read_sources splits the two."""
    files = " ".join(SOURCE_FILES)
    return (f"for f in {files}; do if [ -f \"$f\" ] && [ \"$f\" != {quote(own)} ]; "
            "then grep -hiE '^[[:space:]]*$|^[[:space:]]*(deb[[:space:]]|URIs:|Suites:|"
            "Components:|Types:|Enabled:)' \"$f\"; echo; "
            "fi; done; echo '--- ours'; "
            f"{probe_path(own, with_content=with_content)}")


def read_sources(output: str) -> tuple[list[AptEntry], FileState | None]:
    """probe_sources' output -> the host's other entries, and the state of the own file."""
    others, _, own = output.partition(_OWN_FILE_MARK)
    return parse_apt_entries(others.splitlines()), parse_path_state(own.strip("\n"))


def source_mode(uri: str) -> int:
    """0600 for a URI with credentials (``user:password@``), which are nobody else's to read;
    0644 otherwise, as apt's own files are."""
    return 0o600 if "@" in uri.split("//", 1)[-1].split("/", 1)[0] else 0o644


def plan_source_file(current: FileState | None, desired: DesiredFile,
                     show_diff: bool = False) -> Plan:
    """Write the source file when it differs, keeping it only if apt then fetches every source
    without an error; otherwise it is removed again and the lists refreshed without it."""
    plan = plan_file(current, desired, show_diff)
    if plan.action is None:
        return plan
    undo = quote(f"apt could not use the source {desired.path} names; the file was removed "
                 "again")
    return Plan(plan.reason, diff=plan.diff, action=(
        f"{plan.action}\nif ! {_APT_UPDATE_STRICT}; then rm -f {quote(desired.path)}; "
        f"{_APT_UPDATE} >/dev/null 2>&1; echo {undo} >&2; exit 1; fi"))


def remove_source_action(path: str) -> str:
    """Shell removing a source file and refreshing the lists without it."""
    return f"rm -f {quote(path)} && {_APT_UPDATE}"
