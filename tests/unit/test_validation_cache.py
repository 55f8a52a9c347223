"""The validation cache: an unchanged inventory skips pydantic; anything else is validated."""

from __future__ import annotations

import inspect
import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from provisioner.errors import InventoryError
from provisioner.inventory import loader as inventory_module
from provisioner.inventory import validation_cache
from provisioner.inventory.loader import load_inventory
from provisioner.inventory.schema import validate_document
from provisioner.inventory.yaml_loader import load_yaml_text

FIXTURES = Path(__file__).parent / "fixtures"
ROLES = ("ufw", "fail2ban")
PROJECT_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def inventory_path(tmp_path: Path) -> Path:
    path = tmp_path / "production.yml"
    path.write_text((FIXTURES / "production.yml").read_text())
    return path


def entries(cache: Path) -> list[Path]:
    return sorted((cache / "validated-inventories").glob("*.json"))


def refuse_validation(monkeypatch: pytest.MonkeyPatch) -> None:
    def validate(path: Path, text: str) -> None:
        raise AssertionError("validated again although the inventory did not change")

    monkeypatch.setattr(inventory_module, "_validate", validate)


def test_unchanged_inventory_loads_from_the_cache_with_the_same_result(
        inventory_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = load_inventory(inventory_path, ROLES)
    refuse_validation(monkeypatch)

    second = load_inventory(inventory_path, ROLES)

    assert second == first
    assert list(second.hosts) == list(first.hosts)


def test_cached_inventory_still_resolves_secrets_on_every_load(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "inventory.yml"
    path.write_text(textwrap.dedent("""\
        hosts:
          web1: {address: 10.0.0.1, roles: [ufw], vars: {token: {secret: env:CACHE_TOKEN}}}
        """))
    monkeypatch.setenv("CACHE_TOKEN", "first")
    load_inventory(path, ROLES)
    monkeypatch.delenv("CACHE_TOKEN")

    with pytest.raises(InventoryError, match="CACHE_TOKEN"):
        load_inventory(path, ROLES).select()


def test_cached_inventory_still_checks_role_names(inventory_path: Path) -> None:
    load_inventory(inventory_path, ROLES)

    with pytest.raises(InventoryError, match="unknown role 'fail2ban'"):
        load_inventory(inventory_path, ("ufw",))


def test_edited_inventory_is_validated_again(inventory_path: Path) -> None:
    load_inventory(inventory_path, ROLES)
    inventory_path.write_text(inventory_path.read_text().replace("port: 22", "port: 0"))

    with pytest.raises(InventoryError, match="greater than or equal to 1"):
        load_inventory(inventory_path, ROLES)


def test_invalid_inventory_is_never_cached(tmp_path: Path, private_cache_directory: Path) -> None:
    path = tmp_path / "inventory.yml"
    path.write_text("hosts:\n  web1: {address: 10.0.0.1, roles: [ufw], colour: blue}\n")

    for _ in range(2):
        with pytest.raises(InventoryError, match="unknown key 'colour'"):
            load_inventory(path, ROLES)

    assert entries(private_cache_directory) == []


def test_corrupt_cache_entry_is_ignored(inventory_path: Path,
                                        private_cache_directory: Path) -> None:
    expected = load_inventory(inventory_path, ROLES)
    for entry in entries(private_cache_directory):
        entry.write_text("{not json")

    assert load_inventory(inventory_path, ROLES) == expected


def test_unwritable_cache_location_still_loads(inventory_path: Path, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "a-file-not-a-directory"
    blocker.write_text("")
    monkeypatch.setenv("PROVISIONER_CACHE_DIR", str(blocker))

    assert sorted(load_inventory(inventory_path, ROLES).hosts) == ["db1", "web1"]


def test_values_json_cannot_give_back_are_not_cached(tmp_path: Path,
                                                      private_cache_directory: Path) -> None:
    path = tmp_path / "inventory.yml"
    path.write_text("hosts:\n  web1: {address: 10.0.0.1, roles: [ufw], "
                    "vars: {since: 2026-01-31}}\n")

    since = load_inventory(path, ROLES).hosts["web1"].vars["since"]

    assert (str(since), entries(private_cache_directory)) == ("2026-01-31", [])


def test_cache_entries_are_private(inventory_path: Path, private_cache_directory: Path) -> None:
    load_inventory(inventory_path, ROLES)

    (entry,) = entries(private_cache_directory)
    assert stat.S_IMODE(entry.stat().st_mode) == 0o600
    assert stat.S_IMODE(entry.parent.stat().st_mode) == 0o700


def test_a_change_to_the_validator_changes_the_key(tmp_path: Path) -> None:
    schema = tmp_path / "schema.py"
    schema.write_text("version 1")
    before = validation_cache.fingerprint("hosts: {}", [schema])
    schema.write_text("version 2")

    assert validation_cache.fingerprint("hosts: {}", [schema]) != before


def test_only_the_newest_entries_are_kept(private_cache_directory: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(validation_cache, "KEEP_ENTRIES", 3)
    for number in range(5):
        validation_cache.validated(f"document {number}", [], lambda: {"n": 1})

    assert len(entries(private_cache_directory)) == 3


def test_a_cached_load_does_not_import_pydantic(inventory_path: Path) -> None:
    load_inventory(inventory_path, ROLES)
    script = ("import sys; from pathlib import Path; "
              "from provisioner.inventory.loader import load_inventory; "
              f"load_inventory(Path({str(inventory_path)!r}), {ROLES!r}); "
              "print('pydantic' in sys.modules)")

    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          check=True, cwd=PROJECT_ROOT, env=dict(os.environ))

    assert done.stdout.strip() == "False"


@pytest.mark.parametrize("decides", [inventory_module._validate, validate_document,
                                     load_yaml_text],
                         ids=["parse-and-check", "schema", "yaml-loader"])
def test_every_module_whose_code_decides_a_cached_document_is_part_of_the_key(
        decides: object) -> None:
    source = Path(inspect.getsourcefile(decides) or "")  # type: ignore[arg-type]

    assert source.resolve() in {path.resolve() for path in inventory_module.VALIDATOR_SOURCES}


def test_an_inventory_refused_after_the_schema_leaves_no_cached_copy(
        tmp_path: Path, private_cache_directory: Path) -> None:
    """A secret written as text passes the schema but not the role's check: the cache must not
    keep the copy of it that the schema's pass wrote."""
    from provisioner import cli
    from provisioner.errors import ProvisionerError
    from provisioner.run.engine import RunOptions

    path = tmp_path / "inventory.yml"
    path.write_text("hosts:\n  web1: {address: 10.0.0.1, roles: [ufw], vars: "
                    "{ufw_default_incoming: 42}}\n")
    inventory = load_inventory(path, ("ufw",))
    assert len(entries(private_cache_directory)) == 1

    with pytest.raises(ProvisionerError):
        cli.select_jobs(inventory, "", "", RunOptions())

    assert entries(private_cache_directory) == []
