"""Finds the Debian mirror the host's own apt uses, so machines install from where the host can.

The host's apt configuration is the only place that knows which mirror is reachable (and allowed)
from here, so the sandbox never names a mirror of its own.
"""

import re
from collections.abc import Iterator
from pathlib import Path

from provisioner.sandbox.errors import SandboxError

APT_DIR = Path("/etc/apt")
OS_RELEASE = Path("/etc/os-release")
OPTIONS = re.compile(r"\[[^\]]*\]")
"""The `[arch=amd64 signed-by=...]` group a one-line entry may carry after `deb`."""


def parse_deb822_stanzas(text: str) -> Iterator[dict[str, str]]:
    """Each deb822 paragraph as field -> value, folding continuation lines, dropping comments."""
    fields: dict[str, str] = {}
    last_key = ""
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        if not line.strip():
            if fields:
                yield fields
            fields, last_key = {}, ""
        elif line[0] in " \t" and last_key:
            fields[last_key] += " " + line.strip()
        elif ":" in line:
            key, _, value = line.partition(":")
            last_key = key.strip().lower()
            fields[last_key] = value.strip()
    if fields:
        yield fields


def is_security_source(uri: str, suite: str) -> bool:
    """Security archives are added later by a role, and a fresh cloud VM may lack them."""
    return suite.endswith("-security") or uri.rstrip("/").endswith("-security")


def mirror_from_deb822(text: str, host_suite: str) -> str | None:
    """The first `URIs:` entry of an enabled binary stanza that serves the host's main suite."""
    for stanza in parse_deb822_stanzas(text):
        if stanza.get("enabled", "yes").lower() == "no":
            continue
        if "deb" not in stanza.get("types", "").split():
            continue
        if host_suite not in stanza.get("suites", "").split():
            continue
        for uri in stanza.get("uris", "").split():
            if uri.startswith(("http://", "https://")) and not is_security_source(uri, host_suite):
                return uri.rstrip("/")
    return None


def mirror_from_one_line(text: str, host_suite: str) -> str | None:
    """The first `deb URI SUITE ...` line (bracketed options allowed) for the host's main suite."""
    for line in text.splitlines():
        words = OPTIONS.sub(" ", line.split("#", 1)[0]).split()
        if len(words) < 3 or words[0] != "deb" or words[2] != host_suite:
            continue
        uri = words[1]
        if uri.startswith(("http://", "https://")) and not is_security_source(uri, words[2]):
            return uri.rstrip("/")
    return None


def read_host_suite(os_release: Path = OS_RELEASE) -> str:
    """The host's Debian codename (VERSION_CODENAME), which names its main suite in apt sources."""
    for line in os_release.read_text(encoding="utf-8").splitlines():
        key, _, value = line.partition("=")
        if key == "VERSION_CODENAME" and value:
            return value.strip().strip('"')
    raise SandboxError(
        f"{os_release} names no VERSION_CODENAME, so the host's Debian suite is unknown. The "
        "sandbox needs a Debian host; run it on Debian 12 or later."
    )


def find_host_mirror(apt_dir: Path = APT_DIR, os_release: Path = OS_RELEASE) -> str:
    """The host's Debian mirror: deb822 `.sources` files first, then the one-line sources.list."""
    suite = read_host_suite(os_release)
    for path in sorted((apt_dir / "sources.list.d").glob("*.sources")):
        found = mirror_from_deb822(path.read_text(encoding="utf-8"), suite)
        if found:
            return found
    one_line = apt_dir / "sources.list"
    if one_line.is_file():
        found = mirror_from_one_line(one_line.read_text(encoding="utf-8"), suite)
        if found:
            return found
    raise SandboxError(
        f"No Debian mirror for suite {suite!r} found in {apt_dir}/sources.list.d/*.sources or "
        f"{apt_dir}/sources.list. The sandbox builds machines from the mirror the host's apt "
        "uses; add an http(s) entry for that suite and try again."
    )


def render_debian_sources(mirror: str, suite: str) -> str:
    """The machine's deb822 sources: main and updates (a patched image names the security
    archive in a file of its own, image.apply_security_updates)."""
    return (
        "Types: deb\n"
        f"URIs: {mirror}\n"
        f"Suites: {suite} {suite}-updates\n"
        "Components: main\n"
        "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
    )


def render_security_sources(mirror: str, suite: str) -> str:
    """A patched image's security archive beside the mirror (``<mirror>-security``), in the
    one-line format (Lynis 3.0.8 recognises a security archive only there, PKGS-7388)."""
    return ("# The security archive, as a cloud image names it (sandbox image).\n"
            "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] "
            f"{mirror.rstrip('/')}-security {suite}-security main\n")
