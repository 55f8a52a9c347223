"""Records: the last result of each command per host, kept on this machine for the report."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from provisioner.records import load_record, record_path, save_record


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("PROVISIONER_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_a_saved_record_reads_back_and_only_its_owner_can_read_it(tmp_path: Path) -> None:
    inventory = tmp_path / "prod.yml"
    path = save_record(inventory, "api1", "audit", {"hardening_index": 86})
    assert load_record(inventory, "api1", "audit") == {"hardening_index": 86}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


def test_two_inventories_naming_a_host_alike_keep_records_apart(tmp_path: Path) -> None:
    save_record(tmp_path / "a.yml", "web1", "verify", {"passed": 1})
    assert load_record(tmp_path / "b.yml", "web1", "verify") is None
    assert record_path(tmp_path / "a.yml", "web1", "verify") != \
        record_path(tmp_path / "b.yml", "web1", "verify")


def test_a_damaged_record_reads_as_none(tmp_path: Path) -> None:
    path = save_record(tmp_path / "a.yml", "web1", "provision", {})
    path.write_text("{cut short")
    assert load_record(tmp_path / "a.yml", "web1", "provision") is None


def test_an_unknown_kind_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown record kind"):
        record_path(tmp_path / "a.yml", "web1", "deploy")
