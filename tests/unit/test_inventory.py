"""Inventory loading: the valid file merges as documented, every mistake names the file and key."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from provisioner.errors import InventoryError, ProvisionerError
from provisioner.inventory.hosts import Inventory
from provisioner.inventory.loader import load_inventory
from provisioner.secrets.values import Secret

FIXTURES = Path(__file__).parent / "fixtures"
ROLES = ("ufw", "fail2ban")


def write(tmp_path: Path, text: str, name: str = "inventory.yml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def write_data(tmp_path: Path, data: Any) -> Path:
    path = tmp_path / "inventory.yml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def minimal(**host: Any) -> dict[str, Any]:
    """An inventory with one host web1 holding role ufw, plus the given host keys."""
    return {"hosts": {"web1": {"address": "10.0.0.1", "roles": ["ufw"], **host}}}


def load_fixture(tmp_path: Path) -> Inventory:
    path = tmp_path / "production.yml"
    path.write_text((FIXTURES / "production.yml").read_text())
    return load_inventory(path, ROLES)


# --- the valid example ------------------------------------------------------------------------


def test_sample_inventory_loads_every_host(tmp_path: Path) -> None:
    inventory = load_fixture(tmp_path)

    assert sorted(inventory.hosts) == ["db1", "web1"]


def test_host_without_port_or_user_takes_the_defaults(tmp_path: Path) -> None:
    web1 = load_fixture(tmp_path).hosts["web1"]

    assert (web1.address, web1.port, web1.user) == ("203.0.113.10", 22, "admin")


def test_host_port_and_user_override_the_defaults(tmp_path: Path) -> None:
    db1 = load_fixture(tmp_path).hosts["db1"]

    assert (db1.address, db1.port, db1.user) == ("db1.example.org", 2222, "ops")


def test_host_roles_come_from_its_groups(tmp_path: Path) -> None:
    assert load_fixture(tmp_path).hosts["web1"].roles == ("ufw", "fail2ban")


def test_group_roles_come_first_then_host_roles_without_repeats(tmp_path: Path) -> None:
    path = write_data(tmp_path, {
        "groups": {"base": {"roles": ["ufw"]}},
        "hosts": {"web1": {"address": "10.0.0.1", "groups": ["base"],
                           "roles": ["fail2ban", "ufw"]}},
    })

    assert load_inventory(path, ROLES).hosts["web1"].roles == ("ufw", "fail2ban")


def test_group_variables_reach_only_members(tmp_path: Path) -> None:
    inventory = load_fixture(tmp_path)

    assert inventory.hosts["web1"].vars["ufw_rules"] == [
        {"port": 80, "proto": "tcp"}, {"port": 443, "proto": "tcp"}]
    assert inventory.hosts["db1"].vars["ufw_rules"] == [
        {"port": 5432, "proto": "tcp", "from": "10.0.1.0/24"}]


# --- variable precedence ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("defined_in", "host_groups", "cli", "expected"),
    [
        (["defaults"], ["first", "second"], {}, "defaults"),
        (["defaults", "first"], ["first", "second"], {}, "first"),
        (["defaults", "first", "second"], ["first", "second"], {}, "second"),
        (["defaults", "first", "second"], ["second", "first"], {}, "first"),
        (["defaults", "first", "second", "host"], ["first", "second"], {}, "host"),
        (["defaults", "first", "host"], ["first", "second"], {"level": "cli"}, "cli"),
    ],
    ids=["defaults-only", "group-over-defaults", "later-group-wins",
         "group-order-is-the-hosts", "host-over-groups", "cli-over-host"],
)
def test_variable_precedence_is_defaults_groups_in_host_order_host_then_cli(
        tmp_path: Path, defined_in: list[str], host_groups: list[str], cli: dict[str, str],
        expected: str) -> None:
    def layer(name: str) -> dict[str, str]:
        return {"level": name} if name in defined_in else {}

    path = write_data(tmp_path, {
        "defaults": {"vars": layer("defaults")},
        "groups": {"first": {"roles": ["ufw"], "vars": layer("first")},
                   "second": {"vars": layer("second")}},
        "hosts": {"web1": {"address": "10.0.0.1", "groups": host_groups, "vars": layer("host")}},
    })

    assert load_inventory(path, ROLES, cli).hosts["web1"].vars["level"] == expected


def test_variables_of_different_names_from_every_layer_are_all_kept(tmp_path: Path) -> None:
    path = write_data(tmp_path, {
        "defaults": {"vars": {"a": 1}},
        "groups": {"g": {"roles": ["ufw"], "vars": {"b": 2}}},
        "hosts": {"web1": {"address": "10.0.0.1", "groups": ["g"], "vars": {"c": 3}}},
    })

    variables = load_inventory(path, ROLES, {"d": 4}).hosts["web1"].vars

    assert dict(variables) == {"a": 1, "b": 2, "c": 3, "d": 4}


# --- errors: one message per mistake, naming the file and the key -----------------------------


@pytest.mark.parametrize(
    ("data", "key", "problem"),
    [
        pytest.param({**minimal(), "hostz": {}}, "hostz", "unknown key 'hostz'",
                     id="unknown-top-level-key"),
        pytest.param(minimal(colour="blue"), "hosts.web1.colour", "unknown key 'colour'",
                     id="unknown-host-key"),
        pytest.param({**minimal(), "defaults": {"usr": "admin"}}, "defaults.usr",
                     "unknown key 'usr'", id="unknown-defaults-key"),
        pytest.param({**minimal(), "groups": {"web": {"role": ["ufw"]}}}, "groups.web.role",
                     "unknown key 'role'", id="unknown-group-key"),
        pytest.param(minimal(ssh={"identity": "k"}), "hosts.web1.ssh.identity",
                     "unknown key 'identity'", id="unknown-ssh-key"),
        pytest.param(minimal(address="999.1.1.1"), "hosts.web1.address", "'999.1.1.1'",
                     id="address-octet-out-of-range"),
        pytest.param(minimal(address="bad_name!"), "hosts.web1.address", "'bad_name!'",
                     id="address-not-a-dns-name"),
        pytest.param(minimal(port=0), "hosts.web1.port", "greater than or equal to 1",
                     id="port-zero"),
        pytest.param(minimal(port=70000), "hosts.web1.port", "less than or equal to 65535",
                     id="port-too-high"),
        pytest.param({**minimal(), "defaults": {"port": 0}}, "defaults.port",
                     "greater than or equal to 1", id="default-port-zero"),
        pytest.param({"hosts": {"web1": {"roles": ["ufw"]}}}, "hosts.web1.address",
                     "required", id="address-missing"),
        pytest.param({"groups": {}}, "hosts", "required", id="hosts-missing"),
        pytest.param({**minimal(), "groups": {"web": {"roles": ["nginx"]}}},
                     "groups.web.roles", "unknown role 'nginx'", id="unknown-role-in-group"),
        pytest.param(minimal(roles=["ufw", "nginx"]), "hosts.web1.roles",
                     "unknown role 'nginx'", id="unknown-role-in-host"),
        pytest.param(minimal(groups=["dbs"]), "hosts.web1.groups", "group 'dbs' is not defined",
                     id="undefined-group"),
        pytest.param({"groups": {"plain": {}},
                      "hosts": {"web1": {"address": "10.0.0.1", "groups": ["plain"]}}},
                     "hosts.web1", "this host has no roles", id="host-in-roleless-group"),
        pytest.param({"hosts": {"web1": {"address": "10.0.0.1"}}}, "hosts.web1",
                     "this host has no roles", id="host-in-no-group-without-roles"),
        pytest.param({"hosts": {"web 1": {"address": "10.0.0.1", "roles": ["ufw"]}}},
                     "hosts.web 1", "host names may contain", id="bad-host-name"),
        pytest.param(minimal(vars={"pw": {"secret": "vault:db"}}), "hosts.web1.vars.pw",
                     "that is not a secret reference", id="unknown-secret-kind"),
        pytest.param(minimal(ssh={"sudo_password": {"value": "x"}}),
                     "hosts.web1.ssh.sudo_password", "must be a reference, not the value",
                     id="sudo-password-not-a-secret"),
        pytest.param(minimal(ssh={"connect_timeout": 0}), "hosts.web1.ssh.connect_timeout",
                     "greater than 0", id="timeout-zero"),
    ],
)
def test_invalid_inventory_error_names_the_file_and_key(
        tmp_path: Path, data: dict[str, Any], key: str, problem: str) -> None:
    path = write_data(tmp_path, data)

    with pytest.raises(InventoryError) as caught:
        load_inventory(path, ROLES)

    assert (caught.value.path, caught.value.key) == (str(path), key)
    assert f"Inventory error in {path}, at {key}: " in str(caught.value)
    assert problem in str(caught.value)


def test_several_problems_are_counted_after_the_first(tmp_path: Path) -> None:
    path = write_data(tmp_path, minimal(colour="blue", size="xl"))

    with pytest.raises(InventoryError, match=r"\(1 more problem after this one\)"):
        load_inventory(path, ROLES)


def test_duplicate_host_names_the_key_and_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, """\
        hosts:
          web1:
            address: 10.0.0.1
            roles: [ufw]
          web1:
            address: 10.0.0.2
            roles: [ufw]
        """)

    with pytest.raises(InventoryError) as caught:
        load_inventory(path, ROLES)

    assert caught.value.key == "line 5"
    assert str(path) in str(caught.value)
    assert "duplicate key 'web1'" in str(caught.value)


def test_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, """\
        hosts:
          web1:
            address: 10.0.0.1
            roles: [ufw
          web2:
            address: 10.0.0.2
        """)

    with pytest.raises(InventoryError) as caught:
        load_inventory(path, ROLES)

    assert caught.value.key == "line 5"
    assert str(caught.value).startswith(f"Inventory error in {path}, at line 5: ")
    assert "fix the YAML there" in str(caught.value)


def test_missing_file_names_the_file_and_how_to_create_it(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.yml"

    with pytest.raises(InventoryError) as caught:
        load_inventory(path, ROLES)

    assert str(caught.value).startswith(f"Inventory error in {path}: the file does not exist")
    assert "--inventory" in str(caught.value)


@pytest.mark.parametrize("text", ["", "- web1\n- web2\n", "just a string\n"],
                         ids=["empty", "list", "scalar"])
def test_top_level_that_is_not_a_mapping_is_refused(tmp_path: Path, text: str) -> None:
    path = write(tmp_path, text)

    with pytest.raises(InventoryError, match="the top level must be a mapping"):
        load_inventory(path, ROLES)


def test_yaml_merge_keys_are_accepted(tmp_path: Path) -> None:
    path = write(tmp_path, """\
        groups:
          web:
            roles: [ufw]
            vars: &web_vars
              ufw_ssh_limit: true
          api:
            roles: [ufw]
            vars:
              <<: *web_vars
              ufw_ssh_port: 2222
        hosts:
          api1:
            address: 10.0.0.1
            groups: [api]
        """)

    variables = load_inventory(path, ROLES).hosts["api1"].vars

    assert (variables["ufw_ssh_limit"], variables["ufw_ssh_port"]) == (True, 2222)


def test_boolean_port_is_refused(tmp_path: Path) -> None:
    path = write_data(tmp_path, minimal(port=True))

    with pytest.raises(InventoryError, match=r"hosts\.web1\.port"):
        load_inventory(path, ROLES)


# --- selection --------------------------------------------------------------------------------


def test_select_without_arguments_returns_every_host(tmp_path: Path) -> None:
    names = [host.name for host in load_fixture(tmp_path).select()]

    assert names == ["web1", "db1"]


def test_select_returns_named_hosts_and_group_members(tmp_path: Path) -> None:
    names = {host.name for host in load_fixture(tmp_path).select(hosts="web1", group="db")}

    assert names == {"web1", "db1"}


def test_select_accepts_comma_separated_hosts_with_spaces(tmp_path: Path) -> None:
    names = {host.name for host in load_fixture(tmp_path).select(hosts="web1, db1")}

    assert names == {"web1", "db1"}


def test_select_unknown_host_is_a_command_line_mistake_naming_the_file_and_the_hosts(
        tmp_path: Path) -> None:
    inventory = load_fixture(tmp_path)

    with pytest.raises(ProvisionerError) as caught:
        inventory.select(hosts="mail1")

    assert not isinstance(caught.value, InventoryError)
    assert str(caught.value) == (f"--host mail1: no such host in {inventory.path}; "
                                 "hosts: db1, web1.")


def test_select_unknown_host_suggests_the_closest_name(tmp_path: Path) -> None:
    inventory = load_fixture(tmp_path)

    with pytest.raises(ProvisionerError, match=r"hosts: db1, web1\. Did you mean 'web1'\?$"):
        inventory.select(hosts="web9")


def test_select_unknown_group_is_a_command_line_mistake_listing_the_groups(
        tmp_path: Path) -> None:
    inventory = load_fixture(tmp_path)

    with pytest.raises(ProvisionerError) as caught:
        inventory.select(group="dbs")

    assert not isinstance(caught.value, InventoryError)
    assert str(caught.value).startswith(f"--group dbs: no such group in {inventory.path}; "
                                        "groups: base, db, web.")


# --- secrets ----------------------------------------------------------------------------------


def test_env_secret_resolves_to_a_masked_secret(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROVISIONER_TEST_DB_PASSWORD", "s3cr3t")
    path = write_data(tmp_path, minimal(
        vars={"db_password": {"secret": "env:PROVISIONER_TEST_DB_PASSWORD"}}))

    secret = load_inventory(path, ROLES).hosts["web1"].vars["db_password"]

    assert isinstance(secret, Secret)
    assert (str(secret), secret.reveal()) == ("***", "s3cr3t")


def test_missing_env_secret_names_the_key_and_the_variable(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PROVISIONER_TEST_UNSET", raising=False)
    path = write_data(tmp_path, minimal(
        vars={"db_password": {"secret": "env:PROVISIONER_TEST_UNSET"}}))

    with pytest.raises(InventoryError) as caught:
        load_inventory(path, ROLES).select("web1")

    assert caught.value.key == "hosts.web1.vars.db_password"
    assert "'PROVISIONER_TEST_UNSET' is not set" in str(caught.value)


def test_a_secret_that_cannot_be_read_stops_only_a_run_that_selects_its_host(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The web hosts' run needs no database key file: a host's unreadable secret is an error
    for the runs that select it, and only for those."""
    monkeypatch.delenv("PROVISIONER_TEST_UNSET", raising=False)
    data = minimal()
    data["hosts"]["db1"] = {"address": "10.0.0.9", "roles": ["ufw"], "vars": {
        "backup_key": {"secret": "file:keys/db1_backup"},
        "db_password": {"secret": "env:PROVISIONER_TEST_UNSET"}}}
    inventory = load_inventory(write_data(tmp_path, data), ROLES)

    assert [config.name for config in inventory.select("web1")] == ["web1"]
    for selection in ("db1", "web1,db1", ""):
        with pytest.raises(InventoryError, match=r"hosts\.db1\.vars\.backup_key: secret file"):
            inventory.select(selection)


def test_an_unreadable_secret_file_is_an_error_naming_it(tmp_path: Path) -> None:
    (tmp_path / "key").write_bytes(b"\xff\xfe not text")
    path = write_data(tmp_path, minimal(vars={"db_password": {"secret": "file:key"}}))

    with pytest.raises(InventoryError, match=r"secret file .*key cannot be read"):
        load_inventory(path, ROLES).select()


def test_file_secret_is_read_relative_to_the_inventory(tmp_path: Path) -> None:
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "db").write_text("from-file\n")
    path = write_data(tmp_path, minimal(vars={"db_password": {"secret": "file:secrets/db"}}))

    secret = load_inventory(path, ROLES).hosts["web1"].vars["db_password"]

    assert secret == Secret("from-file")


def test_sudo_password_secret_resolves_into_ssh_settings(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROVISIONER_TEST_SUDO", "sudo-pw")
    path = write_data(tmp_path, {**minimal(), "defaults": {
        "ssh": {"sudo_password": {"secret": "env:PROVISIONER_TEST_SUDO"}}}})

    ssh = load_inventory(path, ROLES).hosts["web1"].ssh

    assert ssh.sudo_password == Secret("sudo-pw")


def test_missing_env_secret_in_defaults_names_the_defaults_key(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PROVISIONER_TEST_UNSET", raising=False)
    path = write_data(tmp_path, {**minimal(), "defaults": {
        "vars": {"db_password": {"secret": "env:PROVISIONER_TEST_UNSET"}}}})

    with pytest.raises(InventoryError) as caught:
        load_inventory(path, ROLES).select()

    assert caught.value.key == "defaults.vars.db_password"


def test_secret_nested_in_a_list_of_mappings_is_resolved(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROVISIONER_TEST_APP_PW", "app-pw")
    path = write_data(tmp_path, minimal(vars={
        "db_users": [{"name": "app", "password": {"secret": "env:PROVISIONER_TEST_APP_PW"}}]}))

    users = load_inventory(path, ROLES).hosts["web1"].vars["db_users"]

    assert users[0]["password"] == Secret("app-pw")


# --- ssh settings -----------------------------------------------------------------------------


def test_ssh_settings_merge_defaults_with_the_host_override(tmp_path: Path) -> None:
    db1 = load_fixture(tmp_path).hosts["db1"].ssh

    assert (db1.connect_timeout, db1.jump_host) == (30, "admin@203.0.113.5:22")
    assert db1.identity_file == tmp_path / "keys" / "id_ed25519"


def test_ssh_settings_without_override_are_the_defaults(tmp_path: Path) -> None:
    web1 = load_fixture(tmp_path).hosts["web1"].ssh

    assert (web1.connect_timeout, web1.jump_host, web1.command_timeout) == (10, None, 1800.0)
    assert web1.trust_on_first_use is False


def test_relative_ssh_paths_resolve_against_the_inventory_directory(tmp_path: Path) -> None:
    web1 = load_fixture(tmp_path).hosts["web1"].ssh

    assert web1.identity_file == tmp_path / "keys" / "id_ed25519"
    assert web1.known_hosts == tmp_path / "known_hosts"


def test_home_relative_ssh_paths_are_expanded(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    path = write_data(tmp_path, minimal(ssh={"identity_file": "~/.ssh/id_ed25519"}))

    ssh = load_inventory(path, ROLES).hosts["web1"].ssh

    assert ssh.identity_file == tmp_path / "home" / ".ssh" / "id_ed25519"
    assert ssh.known_hosts == tmp_path / "home" / ".ssh" / "known_hosts"


def test_no_identity_file_means_none(tmp_path: Path) -> None:
    path = write_data(tmp_path, minimal())

    assert load_inventory(path, ROLES).hosts["web1"].ssh.identity_file is None


# --- unknown keys: named as written, with the key probably meant -----------------------------


def load_error(tmp_path: Path, data: Any) -> InventoryError:
    path = write_data(tmp_path, data)
    with pytest.raises(InventoryError) as caught:
        load_inventory(path, ROLES)
    return caught.value


def test_misspelt_required_key_is_named_with_the_key_it_meant(tmp_path: Path) -> None:
    error = load_error(tmp_path, {"hosts": {"web1": {"adress": "10.0.0.1", "roles": ["ufw"]}}})

    assert (error.key, error.problem) == (
        "hosts.web1.adress", "unknown key 'adress' under hosts.web1; did you mean 'address'?")


def test_required_key_hidden_by_a_misspelling_is_not_counted_as_another_problem(
        tmp_path: Path) -> None:
    error = load_error(tmp_path, {"hosts": {"web1": {"adress": "10.0.0.1", "roles": ["ufw"]}}})

    assert "more problem" not in error.problem


def test_unknown_key_is_named_before_a_missing_key_it_does_not_explain(tmp_path: Path) -> None:
    error = load_error(tmp_path, {"hosts": {"web1": {"roles": ["ufw"], "colour": "blue"}}})

    assert error.key == "hosts.web1.colour"
    assert error.problem.endswith("(1 more problem after this one)")


def test_unknown_key_without_a_close_match_lists_the_keys_allowed_there(tmp_path: Path) -> None:
    error = load_error(tmp_path, minimal(colour="blue"))

    assert error.problem == ("unknown key 'colour' under hosts.web1; the keys allowed there are "
                             "address, port, user, groups, roles, vars, ssh; see README.md "
                             "'Inventory' for the keys")


def test_unknown_top_level_key_suggests_the_top_level_key(tmp_path: Path) -> None:
    error = load_error(tmp_path, {"hostz": {"web1": {"address": "10.0.0.1"}}})

    assert error.problem == "unknown key 'hostz' at the top level; did you mean 'hosts'?"


def test_unknown_ssh_key_suggests_one_of_the_ssh_keys(tmp_path: Path) -> None:
    error = load_error(tmp_path, {**minimal(), "defaults": {"ssh": {"knownhosts": "x"}}})

    assert error.problem == ("unknown key 'knownhosts' under defaults.ssh; did you mean "
                             "'known_hosts'?")


def test_missing_required_key_says_which_and_where(tmp_path: Path) -> None:
    error = load_error(tmp_path, {"hosts": {"web1": {"roles": ["ufw"]}}})

    assert error.problem == "the key 'address' is required under hosts.web1 and is missing"


def test_value_of_the_wrong_kind_is_shown_as_written(tmp_path: Path) -> None:
    error = load_error(tmp_path, minimal(port="ssh"))

    assert error.problem == "Input should be a valid integer, got 'ssh'"


def test_host_without_any_keys_is_asked_to_be_a_mapping(tmp_path: Path) -> None:
    error = load_error(tmp_path, {"hosts": {"web1": None}})

    assert (error.key, error.problem) == (
        "hosts.web1", "should be a mapping (indented 'key: value' lines), got None")


# --- secrets: a reference is required --------------------------------------------------------


@pytest.mark.parametrize("where", ["defaults", "host"])
def test_plain_text_sudo_password_asks_for_one_of_the_two_reference_forms(
        tmp_path: Path, where: str) -> None:
    ssh = {"ssh": {"sudo_password": "hunter2"}}
    data = {**minimal(), "defaults": ssh} if where == "defaults" else minimal(**ssh)

    error = load_error(tmp_path, data)

    assert "must be a reference, not the value in plain text" in error.problem
    assert "{secret: env:NAME}" in error.problem and "{secret: file:PATH}" in error.problem


def test_plain_text_sudo_password_is_never_repeated_in_the_message(tmp_path: Path) -> None:
    error = load_error(tmp_path, minimal(ssh={"sudo_password": "hunter2"}))

    assert "hunter2" not in str(error)


def test_sudo_password_mapping_that_is_no_reference_shows_the_two_forms(tmp_path: Path) -> None:
    error = load_error(tmp_path, minimal(ssh={"sudo_password": {"value": "x"}}))

    assert "{secret: env:NAME}" in error.problem and "{secret: file:PATH}" in error.problem


def test_loading_without_resolving_secrets_needs_none_of_their_variables(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PROVISIONER_TEST_UNSET", raising=False)
    unset = {"secret": "env:PROVISIONER_TEST_UNSET"}
    path = write_data(tmp_path, {**minimal(vars={"token": unset}),
                                 "defaults": {"ssh": {"sudo_password": unset}}})

    web1 = load_inventory(path, ROLES, resolve_secrets=False).hosts["web1"]

    assert (web1.address, web1.vars["token"].reveal(), web1.ssh.sudo_password) == (
        "10.0.0.1", "", Secret(""))


# --- the inventory path ----------------------------------------------------------------------


def test_inventory_path_that_is_a_directory_says_so_and_lists_its_yaml_files(
        tmp_path: Path) -> None:
    write_data(tmp_path, minimal())

    with pytest.raises(InventoryError) as caught:
        load_inventory(tmp_path, ROLES)

    assert str(caught.value) == (
        f"Inventory error in {tmp_path}: this is a directory, not an inventory file (YAML files "
        "in it: inventory.yml). Pass the file itself: --inventory PATH/TO/FILE.yml.")


# --- one entry per machine -------------------------------------------------------------------


def two_hosts(first: dict[str, Any], second: dict[str, Any]) -> dict[str, Any]:
    return {"hosts": {"web1": {"roles": ["ufw"], **first}, "web2": {"roles": ["ufw"], **second}}}


def test_two_hosts_with_the_same_address_and_port_are_an_error_naming_both(
        tmp_path: Path) -> None:
    error = load_error(tmp_path, two_hosts({"address": "10.0.0.1"},
                                           {"address": "10.0.0.1", "port": 22}))

    assert error.key == "hosts.web2.address"
    assert error.problem.startswith("hosts 'web1' and 'web2' are both 10.0.0.1 port 22, one "
                                    "machine listed twice. Keep one entry")


@pytest.mark.parametrize(("first", "second"), [
    ({"address": "DB.example.org"}, {"address": "db.example.org"}),
    ({"address": "2001:db8::1"}, {"address": "2001:0db8:0:0::1"}),
], ids=["dns-name-case", "ipv6-spellings"])
def test_one_address_spelt_two_ways_is_still_one_machine(
        tmp_path: Path, first: dict[str, Any], second: dict[str, Any]) -> None:
    assert "one machine listed twice" in load_error(tmp_path, two_hosts(first, second)).problem


def test_one_address_on_two_ports_is_two_machines(tmp_path: Path) -> None:
    path = write_data(tmp_path, two_hosts({"address": "10.0.0.1"},
                                          {"address": "10.0.0.1", "port": 2222}))

    assert sorted(load_inventory(path, ROLES).hosts) == ["web1", "web2"]


def test_one_private_address_behind_two_jump_hosts_is_two_machines(tmp_path: Path) -> None:
    path = write_data(tmp_path, two_hosts(
        {"address": "10.0.0.1", "ssh": {"jump_host": "admin@bastion-a"}},
        {"address": "10.0.0.1", "ssh": {"jump_host": "admin@bastion-b"}}))

    assert sorted(load_inventory(path, ROLES).hosts) == ["web1", "web2"]


# --- where each variable was set -------------------------------------------------------------


def test_each_variable_remembers_the_section_that_gave_its_value(tmp_path: Path) -> None:
    path = write_data(tmp_path, {
        "defaults": {"vars": {"a": 1, "b": 1, "c": 1, "d": 1}},
        "groups": {"web": {"roles": ["ufw"], "vars": {"b": 2, "c": 2}}},
        "hosts": {"web1": {"address": "10.0.0.1", "groups": ["web"], "vars": {"c": 3}}},
    })

    origins = load_inventory(path, ROLES, {"d": 4}).variable_origins["web1"]

    assert origins == {"a": "defaults.vars", "b": "groups.web.vars", "c": "hosts.web1.vars",
                       "d": "--set"}


def test_file_variables_are_the_names_of_every_vars_section(tmp_path: Path) -> None:
    inventory = load_fixture(tmp_path)

    assert inventory.file_variables == {"fail2ban_ignoreip", "site", "ufw_rules",
                                        "ufw_ssh_sources", "ufw_ssh_limit"}
