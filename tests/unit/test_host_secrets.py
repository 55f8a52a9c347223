"""Host secrets: declared in the inventory, generated on the host once, read by the steps that
need them, and never shown."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest

from provisioner.change import Change
from provisioner.content.roles import Role
from provisioner.errors import InventoryError, RoleError
from provisioner.host import Host
from provisioner.inventory.loader import load_inventory
from provisioner.ops import secret_store
from provisioner.ops.files import ensure_template
from provisioner.run.session import role_steps
from provisioner.run.walk import HostWalk
from provisioner.secrets.host_store import HostSecret, SecretDeclaration, parse_declaration
from provisioner.secrets.values import MASK
from tests.unit.fakes import LocalShell, host_config, make_host, no_facts

# --- declarations -------------------------------------------------------------------------------

def test_an_empty_declaration_is_a_256_bit_hex_key() -> None:
    assert parse_declaration("jwt_secret", {}) == SecretDeclaration("jwt_secret", "hex", 256)


@pytest.mark.parametrize(("spec", "problem"), [
    ({"kind": "pin"}, "kind 'pin' is not one of hex, base64, password"),
    ({"kind": "password", "length": 12}, "length must be a whole number from 20 to 256"),
    ({"bits": 260}, "bits must be a multiple of 8"),
    ({"bits": 64}, "bits must be a whole number from 128 to 4096"),
    ({"kind": "password", "bits": 256}, "a password secret is sized by 'length'"),
    ({"size": 3}, "unknown setting(s) size"),
    ("long", "give a mapping"),
])
def test_a_declaration_that_cannot_be_generated_is_refused(spec: Any, problem: str) -> None:
    with pytest.raises(ValueError, match=problem.replace("(", r"\(").replace(")", r"\)")):
        parse_declaration("db_password", spec)


@pytest.mark.parametrize("name", ["DB", "db.password", "../x", "", "-x", "a" * 65])
def test_a_name_that_is_not_a_plain_file_name_is_refused(name: str) -> None:
    with pytest.raises(ValueError, match="not a usable secret name"):
        parse_declaration(name, {})


def test_a_host_secret_cannot_become_text_on_the_controller() -> None:
    with pytest.raises(RoleError, match="host secret 'db_password' is only known on the host"):
        str(HostSecret("db_password"))


# --- the inventory ------------------------------------------------------------------------------

def write_inventory(tmp_path: Path, document: dict[str, Any]) -> Path:
    path = tmp_path / "inventory.yml"
    path.write_text(json.dumps(document))
    return path


def inventory_with(group_vars: dict[str, Any], host_vars: dict[str, Any]) -> dict[str, Any]:
    return {"groups": {"db": {"roles": ["ufw"], "vars": group_vars}},
            "hosts": {"db1": {"address": "192.0.2.20", "groups": ["db"], "vars": host_vars}}}


def test_declarations_add_up_across_a_group_and_its_host(tmp_path: Path) -> None:
    path = write_inventory(tmp_path, inventory_with(
        {"host_secrets": {"db_password": {"kind": "password", "length": 24}}},
        {"host_secrets": {"jwt_secret": {}}, "app_password": {"secret": "host:db_password"}}))

    variables = load_inventory(path, known_roles=["ufw"]).hosts["db1"].vars

    assert set(variables["host_secrets"]) == {"db_password", "jwt_secret"}
    assert variables["app_password"] == HostSecret("db_password")


def test_a_host_secret_used_but_never_declared_names_where_it_is_used(tmp_path: Path) -> None:
    path = write_inventory(tmp_path, inventory_with(
        {}, {"app": {"env": [{"secret": "host:db_pasword"}]}}))

    with pytest.raises(InventoryError, match=r"at hosts\.db1\.vars\.app: host secret "
                       r"'db_pasword' is used but host 'db1' does not declare it"):
        load_inventory(path, known_roles=["ufw"])


def test_a_bad_declaration_is_an_inventory_error_naming_its_section(tmp_path: Path) -> None:
    path = write_inventory(tmp_path, inventory_with({"host_secrets": {"k": {"kind": "pin"}}}, {}))

    with pytest.raises(InventoryError, match=r"at groups\.db\.vars\.host_secrets: k: kind"):
        load_inventory(path, known_roles=["ufw"])


# --- generation, on this machine's shell --------------------------------------------------------

def generate(tmp_path: Path, declaration: SecretDeclaration) -> str:
    target = tmp_path / declaration.name
    command = secret_store._generate_command(declaration, str(target))
    done = subprocess.run(["sh", "-ec", command], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    return target.read_text()


@pytest.mark.parametrize(("declaration", "alphabet", "length"), [
    (SecretDeclaration("k"), "0123456789abcdef", 64),
    (SecretDeclaration("k", bits=512), "0123456789abcdef", 128),
    (SecretDeclaration("k", "password", length=20), None, 20),
    (SecretDeclaration("k", "base64", bits=256), None, 44),
])
def test_a_generated_secret_has_the_declared_size_and_alphabet(
        tmp_path: Path, declaration: SecretDeclaration, alphabet: str | None,
        length: int) -> None:
    value = generate(tmp_path, declaration)

    assert len(value) == length
    if alphabet:
        assert set(value) <= set(alphabet)
    if declaration.kind == "password":
        assert value.isalnum() and value.isascii()


def test_a_generated_secret_is_only_readable_by_its_owner(tmp_path: Path) -> None:
    generate(tmp_path, SecretDeclaration("k"))

    assert stat.S_IMODE(os.stat(tmp_path / "k").st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["k"]


def test_generating_never_replaces_a_secret_that_is_already_there(tmp_path: Path) -> None:
    (tmp_path / "k").write_text("kept")

    assert generate(tmp_path, SecretDeclaration("k")) == "kept"
    assert [p.name for p in tmp_path.iterdir()] == ["k"]


def test_two_generations_differ() -> None:
    commands = [SecretDeclaration("k").generate_command() for _ in range(2)]
    values = {subprocess.run(["sh", "-c", c], capture_output=True, text=True).stdout
              for c in commands}
    assert len(values) == 2


# --- the walk: store first, consumers read in their probe ---------------------------------------

@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "etc" / "secrets"
    monkeypatch.setattr(secret_store, "STORE_DIR", str(directory))
    return directory


def template_role(tmp_path: Path) -> tuple[Role, Path]:
    templates = tmp_path / "role" / "templates"
    templates.mkdir(parents=True)
    (templates / "app.env.j2").write_text("DATABASE_URL=postgresql://app:"
                                          "{{ app_db_password }}@localhost/app\n")
    target = tmp_path / "app.env"

    def steps(host: Host) -> list[Any]:
        return [ensure_template(host, str(target), "app.env.j2", mode=0o600)]

    return Role("app", tmp_path / "role", {}, {}, steps), target


def secret_host(*, check: bool = False, show_diff: bool = False) -> Host:
    variables = {"host_secrets": {"db_password": {"kind": "password", "length": 24}},
                 "app_db_password": HostSecret("db_password")}
    return make_host(check=check, show_diff=show_diff, facts=no_facts, variables=variables,
                     config=host_config("local", "127.0.0.1", roles=("app",),
                                        variables=variables))


def walk(host: Host, roles: list[Role], shell: LocalShell | None = None
         ) -> tuple[list[Change], LocalShell]:
    shell = shell or LocalShell()
    changes: list[Change] = []
    HostWalk(host, shell, role_steps(host, roles), changes.append,  # type: ignore[arg-type]
             lambda label: None).run()
    return changes, shell


def test_the_first_run_generates_the_secret_and_renders_it_into_the_template(
        tmp_path: Path, store: Path) -> None:
    role, target = template_role(tmp_path)

    changes, _ = walk(secret_host(), [role])

    password = (store / "db_password").read_text()
    assert [c.changed for c in changes] == [True, True]
    assert "generated db_password (password, 24 characters)" in changes[0].reason
    assert target.read_text() == f"DATABASE_URL=postgresql://app:{password}@localhost/app\n"
    assert stat.S_IMODE(os.stat(store).st_mode) == 0o700


def test_a_second_run_changes_nothing_keeps_the_value_and_costs_one_round_trip(
        tmp_path: Path, store: Path) -> None:
    role, _ = template_role(tmp_path)
    walk(secret_host(), [role])
    before = (store / "db_password").read_text()

    changes, shell = walk(secret_host(), [role])

    assert [c.changed for c in changes] == [False, False]
    assert (store / "db_password").read_text() == before
    assert shell.round_trips == 1


def test_the_value_is_masked_in_every_change_and_diff(tmp_path: Path, store: Path) -> None:
    role, target = template_role(tmp_path)
    walk(secret_host(), [role])
    password = (store / "db_password").read_text()
    target.write_text("DATABASE_URL=old\n")

    changes, _ = walk(secret_host(show_diff=True), [role])

    shown = json.dumps([[c.label, c.reason, c.diff] for c in changes])
    assert password not in shown and MASK in shown
    assert target.read_text().endswith(f"{password}@localhost/app\n")


def test_check_mode_on_a_fresh_host_says_the_template_waits_for_the_secret(
        tmp_path: Path, store: Path) -> None:
    role, target = template_role(tmp_path)

    changes, _ = walk(secret_host(check=True), [role])

    assert "would change after host secrets db_password" in changes[1].reason
    assert not store.exists() and not target.exists()


def test_a_host_declaring_no_secrets_gets_no_store_step(tmp_path: Path, store: Path) -> None:
    host = make_host(facts=no_facts, config=host_config("local", "127.0.0.1"))

    assert role_steps(host, []) == []


@pytest.mark.parametrize(("content", "found"), [("", "is empty"), ("short", "5 characters"),
                                                ("x" * 20 + "\n" + "y" * 10, "whitespace"),
                                                ("\udcff" * 30, "not text (UTF-8)")])
@pytest.mark.parametrize("check", [False, True])
def test_a_stored_value_weaker_than_its_declaration_is_refused_before_any_consumer(
        tmp_path: Path, store: Path, content: str, found: str, check: bool) -> None:
    role, target = template_role(tmp_path)
    walk(secret_host(), [role])
    (store / "db_password").write_bytes(content.encode("utf-8", "surrogateescape"))
    target.unlink()

    changes, _ = walk(secret_host(check=check), [role])

    assert [c.refused for c in changes] == [True]
    assert found in changes[0].reason and "needs at least 20 characters" in changes[0].reason
    assert "secrets.rotate --host local --name db_password" in changes[0].reason
    assert not target.exists()


def test_a_symlinked_store_is_refused_in_check_mode_too(tmp_path: Path, store: Path) -> None:
    role, _ = template_role(tmp_path)
    (tmp_path / "elsewhere").mkdir()
    store.parent.mkdir(parents=True)
    store.symlink_to(tmp_path / "elsewhere")

    changes, _ = walk(secret_host(check=True), [role])

    assert [c.refused for c in changes] == [True]
    assert "symbolic link, not a directory" in changes[0].reason


def test_a_value_is_masked_in_a_diff_after_the_template_stopped_using_it(
        tmp_path: Path, store: Path) -> None:
    role, _ = template_role(tmp_path)
    walk(secret_host(), [role])
    password = (store / "db_password").read_text()
    (tmp_path / "role" / "templates" / "app.env.j2").write_text("DATABASE_URL=unix:///run\n")

    changes, _ = walk(secret_host(show_diff=True), [role])

    shown = json.dumps([[c.label, c.reason, c.diff] for c in changes])
    assert changes[1].changed and MASK in shown and password not in shown


def test_a_value_rotated_out_is_masked_where_a_file_still_holds_it(
        tmp_path: Path, store: Path) -> None:
    role, _ = template_role(tmp_path)
    walk(secret_host(), [role])
    old = (store / "db_password").read_text()
    (store / "db_password.previous").write_text(old)
    (store / "db_password").write_text("N" * 24)

    changes, _ = walk(secret_host(show_diff=True), [role])

    shown = json.dumps([[c.label, c.reason, c.diff] for c in changes])
    assert changes[1].changed and old not in shown and "N" * 24 not in shown


@pytest.mark.parametrize("expression", ["app_db_password | urlencode", "app_db_password | upper",
                                        "app_db_password[:12]", "app_db_password | reverse"])
def test_a_secret_a_filter_changed_is_still_masked_in_the_diff(
        tmp_path: Path, store: Path, expression: str) -> None:
    role, target = template_role(tmp_path)
    walk(secret_host(), [role])
    (tmp_path / "role" / "templates" / "app.env.j2").write_text(
        "PLAIN=1\nKEY={{ " + expression + " }}\n")
    target.write_text("PLAIN=0\nKEY=old-form-of-the-old-value\n")

    changes, _ = walk(secret_host(show_diff=True), [role])

    password = (store / "db_password").read_text()
    diff = changes[1].diff or ""
    assert "+PLAIN=1" in diff and "old-form" not in diff
    assert password[:6] not in diff and password[:6].upper() not in diff
    assert password[-6:][::-1] not in diff


def test_a_controller_secret_a_filter_changed_is_masked_in_the_diff(tmp_path: Path) -> None:
    from provisioner.secrets.values import Secret

    role, target = template_role(tmp_path)
    (tmp_path / "role" / "templates" / "app.env.j2").write_text(
        "URL=https://x/?k={{ app_db_password | urlencode }}\n")
    target.write_text("URL=https://x/?k=old\n")
    value = "s3cr+t/value=with&signs"
    variables = {"app_db_password": Secret(value)}
    host = make_host(show_diff=True, facts=no_facts, variables=variables,
                     config=host_config("local", "127.0.0.1", roles=("app",),
                                        variables=variables))

    changes, _ = walk(host, [role])

    assert changes[0].changed and "s3cr" not in (changes[0].diff or "")
    assert target.read_text() == "URL=https://x/?k=s3cr%2Bt/value%3Dwith%26signs\n"


def test_a_secret_no_longer_declared_is_still_masked_while_the_host_holds_it(
        tmp_path: Path, store: Path) -> None:
    role, _ = template_role(tmp_path)
    walk(secret_host(), [role])
    password = (store / "db_password").read_text()
    variables = {"app_db_password": "not-a-secret-any-more"}
    host = make_host(show_diff=True, facts=no_facts, variables=variables,
                     config=host_config("local", "127.0.0.1", roles=("app",),
                                        variables=variables))

    changes, _ = walk(host, [role])

    assert changes[0].changed and "not-a-secret-any-more" in (changes[0].diff or "")
    assert password not in json.dumps([[c.label, c.reason, c.diff] for c in changes])


def test_a_value_shorter_than_its_declaration_but_strong_enough_stands(
        tmp_path: Path, store: Path) -> None:
    """A declaration made longer (or a value brought in by hand) keeps the value the host has
    while it is as strong as the weakest declaration of its kind: 20 password characters."""
    role, _ = template_role(tmp_path)
    walk(secret_host(), [role])
    (store / "db_password").write_text("A" * 21)

    changes, _ = walk(secret_host(), [role])

    assert not any(change.refused or change.failed for change in changes)
    assert (store / "db_password").read_text() == "A" * 21
