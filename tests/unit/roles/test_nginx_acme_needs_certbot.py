"""An acme site needs the certbot role on its host: without it nothing would ever issue the
certificate, and the site's TLS block would never appear while every run reports ok."""

from __future__ import annotations

import pytest

from provisioner.content.roles import PROJECT_ROOT, load_role
from provisioner.content.variables import merge_role_variables
from provisioner.errors import RoleError
from provisioner.inventory.view import InventoryView
from roles.nginx.role import validate_inventory
from tests.unit.fakes import host_config

ROLE = load_role(PROJECT_ROOT / "roles" / "nginx")
SITE = {"name": "shop", "server_names": ["shop.example.test"], "certificate": "acme",
        "locations": [{"path": "/", "upstream": "api"}]}


def checked(roles: tuple[str, ...], certificate: str = "acme") -> None:
    inventory_vars = {"nginx_upstreams": [{"name": "api", "servers": ["127.0.0.1:8000"]}],
                      "nginx_sites": [{**SITE, "certificate": certificate}]}
    config = host_config(roles=roles, variables=inventory_vars)
    variables = merge_role_variables([ROLE], config.vars, "test")
    validate_inventory({**variables, "host_name": config.name}, InventoryView.of_hosts([config]))


def test_an_acme_site_on_a_host_without_certbot_is_refused_naming_the_site() -> None:
    with pytest.raises(RoleError, match=r"shop use certificate: acme.*add certbot after nginx"):
        checked(("nginx",))


def test_an_acme_site_on_a_host_with_certbot_passes() -> None:
    checked(("nginx", "certbot"))


def test_a_self_signed_site_needs_no_certbot() -> None:
    checked(("nginx",), certificate="self-signed")
