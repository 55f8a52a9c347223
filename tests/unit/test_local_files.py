"""Atomic local writes: the target is whole or untouched, and a failure leaves no temp file."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from provisioner.local_files import write_atomically


def test_write_replaces_the_file_with_the_given_mode(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    target.write_text("old")

    write_atomically(target, "new", mode=0o600)

    assert (target.read_text(), stat.S_IMODE(target.stat().st_mode)) == ("new", 0o600)


def test_failed_write_leaves_the_old_file_and_no_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    target.write_text("old")

    with pytest.raises(UnicodeEncodeError):
        write_atomically(target, "\ud800")  # a lone surrogate cannot be written as UTF-8

    assert [path.name for path in tmp_path.iterdir()] == ["state.json"]
    assert target.read_text() == "old"
