"""Unit tests keep the validation cache and handler records in temporary directories."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def private_cache_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "provisioner-cache"
    monkeypatch.setenv("PROVISIONER_CACHE_DIR", str(directory))
    return directory


@pytest.fixture(autouse=True)
def private_handler_records(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Walks run against the local shell: their pending-handler records go to a temporary
    directory, never to this machine's /var/lib/provisioner."""
    directory = tmp_path / "handler-records"
    monkeypatch.setattr("provisioner.run.handlers.HANDLER_ROOT", str(directory))
    return directory
