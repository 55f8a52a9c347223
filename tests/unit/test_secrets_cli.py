"""secrets.list and secrets.rotate: what they print and what the rotation does on a host."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from provisioner.cli import secrets as secrets_cli
from provisioner.cli.secrets import StoredSecret, age_text, listing_table, parse_listing
from provisioner.secrets.host_store import SecretDeclaration

NOW = 1_800_000_000


def test_the_listing_gives_each_file_its_age_by_the_hosts_clock() -> None:
    output = f"db_password|{NOW - 3 * 86400}|600\nold.previous|{NOW - 60}|600\nnow|{NOW}\n"

    assert parse_listing(output) == [StoredSecret("db_password", 3 * 86400, "600"),
                                     StoredSecret("old.previous", 60, "600")]


@pytest.mark.parametrize(("seconds", "text"), [
    (5, "5 seconds"), (150, "2 minutes"), (7200, "2 hours"), (90 * 86400, "90 days")])
def test_an_age_is_said_in_the_largest_unit_that_fits_twice(seconds: int, text: str) -> None:
    assert age_text(seconds) == text


def test_the_table_shows_declared_missing_and_undeclared_secrets_without_values() -> None:
    declared = {"db_password": SecretDeclaration("db_password", "password", length=24),
                "jwt": SecretDeclaration("jwt")}
    stored = [StoredSecret("db_password", 86400 * 3, "600"), StoredSecret("stray", 10, "644")]

    table = listing_table("db1", stored, declared)

    assert "password, 24 characters" in table and "3 days" in table
    assert "missing (the next provision generates it)" in table
    assert "not declared in the inventory" in table and "0644" in table


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(secrets_cli, "STORE_DIR", str(tmp_path))
    return tmp_path


def run(script: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["sh", "-c", script], capture_output=True, text=True, check=False)


def test_a_rotation_replaces_the_value_and_keeps_the_old_one_beside_it(store: Path) -> None:
    (store / "db_password").write_text("old-value")

    done = run(secrets_cli.rotation_script(SecretDeclaration("db_password", "password",
                                                             length=24)))

    assert done.returncode == 0, done.stderr
    assert (store / "db_password.previous").read_text() == "old-value"
    new = (store / "db_password").read_text()
    assert len(new) == 24 and new.isalnum()
    assert sorted(p.name for p in store.iterdir()) == ["db_password", "db_password.previous"]


def test_a_rotation_of_a_secret_the_host_lacks_changes_nothing(store: Path) -> None:
    done = run(secrets_cli.rotation_script(SecretDeclaration("db_password")))

    assert done.returncode == 3 and not any(store.iterdir())


def test_finishing_removes_the_old_value(store: Path) -> None:
    (store / "k.previous").write_text("old")

    run(secrets_cli.finish_script("k"))

    assert not any(store.iterdir())


def test_a_rotation_never_overwrites_the_old_value_of_one_that_did_not_finish(store: Path) -> None:
    (store / "db_password").write_text("current-value-of-24-char")
    (store / "db_password.previous").write_text("value-a-consumer-may-use")

    done = run(secrets_cli.rotation_script(SecretDeclaration("db_password", "password",
                                                             length=24)))

    assert done.returncode == secrets_cli.EARLIER_ROTATION_OPEN
    assert (store / "db_password").read_text() == "current-value-of-24-char"
    assert (store / "db_password.previous").read_text() == "value-a-consumer-may-use"


def test_a_rotation_through_a_symlinked_store_changes_nothing(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch
                                                              ) -> None:
    real = tmp_path / "real"
    real.mkdir()
    (real / "db_password").write_text("current-value-of-24-char")
    (tmp_path / "store").symlink_to(real)
    monkeypatch.setattr(secrets_cli, "STORE_DIR", str(tmp_path / "store"))

    done = run(secrets_cli.rotation_script(SecretDeclaration("db_password", "password",
                                                             length=24)))

    assert done.returncode == secrets_cli.STORE_NOT_PLAIN
    assert sorted(p.name for p in real.iterdir()) == ["db_password"]
    assert (real / "db_password").read_text() == "current-value-of-24-char"
