"""Where the sandbox keeps its files on the host, in one place so every module agrees."""

from pathlib import Path

SANDBOX_DIR = Path("/var/lib/provisioner-sandbox")
"""Machines, state, the SSH client key and known_hosts: all that belongs to running machines."""

CACHE_DIR = Path("/var/cache/provisioner-sandbox")
"""Base images per suite; a cache, so deleting it only costs a rebuild."""

MACHINES_DIR = SANDBOX_DIR / "machines"
KEY_PATH = SANDBOX_DIR / "id_ed25519"
KNOWN_HOSTS_PATH = SANDBOX_DIR / "known_hosts"
STATE_PATH = SANDBOX_DIR / "state.json"
LOCK_PATH = SANDBOX_DIR / "lock"
FAILED_BOOT_LOGS_DIR = SANDBOX_DIR / "failed-boots"
