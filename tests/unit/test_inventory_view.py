"""What a role may read of the inventory: the hosts of a group and their addresses."""

from __future__ import annotations

from dataclasses import replace

import pytest

from provisioner.errors import RoleError
from provisioner.inventory.view import InventoryView, PeerHost
from provisioner.run.engine import RunOptions, prepare
from tests.unit.fakes import host_config

HOSTS = [host_config("api1", "10.0.0.11", groups=("api",)),
         host_config("api2", "10.0.0.12", groups=("api", "web")),
         host_config("db1", "10.0.0.21", groups=("db",))]


def test_a_group_lists_its_hosts_in_the_inventory_order() -> None:
    view = InventoryView.of_hosts(HOSTS)
    assert [(peer.name, peer.address) for peer in view.hosts("api")] == [
        ("api1", "10.0.0.11"), ("api2", "10.0.0.12")]


def test_addresses_of_several_groups_name_each_host_once() -> None:
    view = InventoryView.of_hosts(HOSTS)
    assert view.addresses("api", "web") == ("10.0.0.11", "10.0.0.12")


def test_a_declared_group_without_hosts_is_empty_not_unknown() -> None:
    view = InventoryView.of_hosts(HOSTS, group_names=("replicas",))
    assert view.hosts("replicas") == ()


def test_an_unknown_group_is_an_error_naming_the_groups_there_are() -> None:
    view = InventoryView.of_hosts(HOSTS)
    with pytest.raises(RoleError, match=r"'apii' is not a group .*groups: api, db, web"):
        view.addresses("apii")


def test_a_job_sees_the_whole_inventory_whatever_the_run_selected() -> None:
    hosts = [replace(config, roles=()) for config in HOSTS]
    [job] = prepare([hosts[2]], RunOptions(), InventoryView.of_hosts(hosts))
    assert job.inventory.addresses("api") == ("10.0.0.11", "10.0.0.12")


def test_a_role_reading_an_unknown_group_fails_naming_the_role_before_any_step() -> None:
    from provisioner.run.session import role_steps
    from tests.unit.fakes import make_host, role_of

    role = role_of([], name="postgres")
    reading = replace(role, steps=lambda host: [host.inventory.addresses("apii")])
    with pytest.raises(RoleError, match=r"^role postgres: group 'apii' is not a group"):
        role_steps(make_host(), [reading])


def test_a_role_naming_a_group_the_inventory_lacks_is_refused_before_contact() -> None:
    from provisioner.content.variables import check_inventory_references
    from tests.unit.fakes import role_of

    def needs_group(variables: object, inventory: InventoryView) -> None:
        inventory.addresses("apii")

    role = replace(role_of([], name="postgres"), validate_inventory=needs_group)
    with pytest.raises(RoleError, match=r"^host db1: role postgres: group 'apii' is not a group"):
        check_inventory_references([role], HOSTS[2], {}, InventoryView.of_hosts(HOSTS))


def test_a_role_whose_groups_exist_passes_the_inventory_check() -> None:
    from provisioner.content.variables import check_inventory_references
    from tests.unit.fakes import role_of

    seen: list[tuple[str, ...]] = []
    role = replace(role_of([], name="postgres"), validate_inventory=lambda variables, view:
                   seen.append(view.addresses("api")))
    check_inventory_references([role], HOSTS[2], {}, InventoryView.of_hosts(HOSTS))
    assert seen == [("10.0.0.11", "10.0.0.12")]


def test_a_host_is_found_by_name_even_in_no_group() -> None:
    loner = host_config("backup1", "10.0.0.31", groups=())
    view = InventoryView.of_hosts([*HOSTS, loner])

    assert view.host("backup1") == PeerHost("backup1", "10.0.0.31", ("ufw",), {})
    assert view.host("backup2") is None


def test_a_peer_shows_its_roles_and_variables_but_never_a_secret() -> None:
    from provisioner.secrets.host_store import HostSecret
    from provisioner.secrets.values import Secret

    backup = host_config("backup1", "10.0.0.31", roles=("backup_target",), variables={
        "backup_target_clients": [{"host": "db1", "public_key": "ssh-ed25519 AAAA db1"}],
        "token": Secret("hunter2-hunter2"), "nested": {"key": HostSecret("k")}})

    peer = InventoryView.of_hosts([backup]).host("backup1")

    assert peer is not None and peer.roles == ("backup_target",)
    assert set(peer.vars) == {"backup_target_clients"}
