"""Remembers each host's facts from its last run, so the next run can render before it asks.

A run whose roles read facts would cost two round trips on a converged host: the facts, then
the probes of steps rendered from them. With the facts the host had last time, the steps are
rendered at once and the facts script travels in front of their probes, in one round trip; the
host's answer is compared with what was remembered before anything is decided, and on any
difference the steps are rendered again from the real facts and probed again (the round trip
the run would have made anyway). Nothing ever acts on remembered facts.

An entry is the facts script's raw output, keyed by the SHA-256 of the script and of everything
that names the login (host name, address, port, user, jump host), so a changed script or a host
moved to another address starts afresh. Facts whose apt sources carry credentials in a URL
(``https://user:token@...``) are never stored, so such a host always pays the separate round
trip; entries are 0600 in a 0700 directory. The cache is an optimisation only: an unreadable,
corrupt or unwritable entry means the facts are gathered first, as without a cache.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

from provisioner.facts import FACTS_SCRIPT, Facts, facts_complete, parse_facts
from provisioner.inventory.hosts import HostConfig
from provisioner.local_files import (
    cache_directory,
    keep_newest,
    private_cache_subdirectory,
    write_atomically,
)

#: How many hosts' facts to keep; the ones not run for longest are removed beyond that.
KEEP_ENTRIES = 256
#: ``scheme://user:secret@host``: a login in an apt source, never written to the cache.
CREDENTIALS_IN_URL = re.compile(r"[a-z][a-z0-9+.-]*://[^/\s@]+@", re.IGNORECASE)


def recall(config: HostConfig) -> Facts | None:
    """The facts this host gave last time, or None when there are none to trust."""
    output = _read(config)
    try:
        return parse_facts(output) if output is not None else None
    except (ValueError, IndexError):  # not what the facts script prints: gather afresh
        return None


def remember(config: HostConfig, output: str) -> None:
    """Keep the host's facts output for its next run (rewritten only when it differs, touched
    when it does not, so the hosts pruned first are the ones not run for longest); an output
    cut short is never kept."""
    if not facts_complete(output) or CREDENTIALS_IN_URL.search(output):
        return
    entry = entry_path(config)
    try:
        if _read(config) == output:
            os.utime(entry)
            return
        directory = private_cache_subdirectory("facts")
        write_atomically(entry, output, mode=0o600)
        keep_newest(directory, "*.facts", KEEP_ENTRIES)
    except OSError:
        return


def _read(config: HostConfig) -> str | None:
    try:
        return entry_path(config).read_text(encoding="utf-8")
    except (OSError, ValueError):
        return None


def entry_path(config: HostConfig) -> Path:
    """Where the host's facts are kept (a hash of the facts script and its login)."""
    digest = hashlib.sha256(b"provisioner-host-facts-v1\0")
    login = (config.name, config.address, str(config.port), config.user, config.ssh.jump_host or "")
    for part in (FACTS_SCRIPT, *login):
        digest.update(part.encode("utf-8") + b"\0")
    return cache_directory() / "facts" / f"{digest.hexdigest()}.facts"
