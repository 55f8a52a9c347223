"""Unit tests keep the validation cache in their own temporary directory."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def private_cache_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "provisioner-cache"
    monkeypatch.setenv("PROVISIONER_CACHE_DIR", str(directory))
    return directory
