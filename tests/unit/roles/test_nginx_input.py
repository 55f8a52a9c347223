"""The nginx role's bad input, each refused before any host is contacted with one message
naming the site and field, and its self-signed certificate decisions."""

from __future__ import annotations

from typing import Any

import pytest

from provisioner.content.roles import PROJECT_ROOT, load_role
from provisioner.content.variables import check_login_kept, merge_role_variables
from provisioner.errors import RoleError
from provisioner.inventory.view import InventoryView
from provisioner.secrets.values import Secret
from roles.nginx.certificates import certificate_names, plan_self_signed, self_signed_action
from roles.nginx.role import validate_inventory
from roles.nginx.sites import Site, certificate_paths, read_sites
from tests.unit.fakes import host_config

ROLE = load_role(PROJECT_ROOT / "roles" / "nginx")
UFW = load_role(PROJECT_ROOT / "roles" / "ufw")
UPSTREAMS = [{"name": "api", "servers": ["127.0.0.1:8000"]}]
ZONES = [{"zone": "api", "rate": "10r/s"}]


def site(**fields: Any) -> dict[str, Any]:
    return {"name": "shop", "server_names": ["shop.example.test"], "certificate": "self-signed",
            "locations": [{"path": "/", "upstream": "api"}], **fields}


def validated(*sites: dict[str, Any], with_ufw: bool = False, **overrides: Any) -> None:
    roles = [UFW, ROLE] if with_ufw else [ROLE]
    variables = merge_role_variables(roles, {"nginx_upstreams": UPSTREAMS,
                                             "nginx_rate_limits": ZONES,
                                             "nginx_sites": list(sites), **overrides}, "test")
    assert ROLE.validate is not None
    ROLE.validate(variables)


def refused(*sites: dict[str, Any], **overrides: Any) -> str:
    with pytest.raises(RoleError) as error:
        validated(*sites, **overrides)
    return str(error.value)


def test_a_good_site_passes() -> None:
    validated(site())


def test_a_location_naming_an_unknown_upstream_is_refused() -> None:
    message = refused(site(locations=[{"path": "/", "upstream": "nope"}]))
    assert "'shop'" in message and "upstream 'nope'" in message and "defines api" in message


def test_a_certificate_source_not_one_of_the_three_is_refused() -> None:
    message = refused(site(certificate="letsencrypt"))
    assert "'shop'" in message and "'letsencrypt'" in message and "self-signed" in message


@pytest.mark.parametrize("name", ["shop_example.test", "-shop.example.test", "localhost",
                                  "*.example.test", "shop.example.test:443", "Shop..test",
                                  "10.77.0.14", "999.1.1.1"])
def test_an_invalid_server_name_is_refused(name: str) -> None:
    message = refused(site(server_names=[name]))
    assert "'shop'" in message and repr(name) in message


@pytest.mark.parametrize("rate", ["10", "10r/h", "ten r/s", "0r/s", "10 r/s"])
def test_a_rate_that_does_not_parse_is_refused(rate: str) -> None:
    message = refused(site(), nginx_rate_limits=[{"zone": "api", "rate": rate}])
    assert "zone 'api'" in message and repr(rate) in message and "30r/m" in message


def test_per_minute_rates_parse() -> None:
    validated(site(), nginx_rate_limits=[{"zone": "api", "rate": "30r/m"}])


def test_duplicate_site_names_are_refused() -> None:
    other = site(server_names=["other.example.test"])
    assert "two sites are named 'shop'" in refused(site(), other)


def test_a_server_name_in_two_sites_is_refused() -> None:
    message = refused(site(), site(name="other"))
    assert "'shop.example.test'" in message and "'other'" in message


def test_a_rate_limit_naming_an_unknown_zone_is_refused() -> None:
    location = {"path": "/", "upstream": "api", "rate_limit": {"zone": "login"}}
    message = refused(site(locations=[location]))
    assert "zone 'login'" in message and "location '/'" in message


def test_files_without_certificate_files_is_refused() -> None:
    assert "certificate_files" in refused(site(certificate="files"))


def test_an_unknown_balancing_method_is_refused() -> None:
    upstreams = [{"name": "api", "servers": ["127.0.0.1:8000"], "balance": "fastest"}]
    assert "'fastest'" in refused(site(), nginx_upstreams=upstreams)


def test_a_self_signed_certificate_longer_than_366_days_is_refused() -> None:
    assert "366" in refused(site(), nginx_self_signed_days=400)


def test_a_files_key_written_as_text_is_refused_before_contact() -> None:
    files = {"certificate": "-----BEGIN CERTIFICATE-----", "key": "-----BEGIN PRIVATE KEY"}
    config = host_config(roles=("nginx",), variables={"nginx_upstreams": UPSTREAMS, "nginx_sites": [
        site(certificate="files", certificate_files=files)]})
    with pytest.raises(RoleError, match="must be a secret reference"):
        check_login_kept([ROLE], config, merge_role_variables([ROLE], config.vars, "test"))


def test_a_files_key_given_as_a_secret_passes() -> None:
    files = {"certificate": "cert", "key": Secret("key", "file:shop.key")}
    config = host_config(roles=("nginx",), variables={"nginx_upstreams": UPSTREAMS, "nginx_sites": [
        site(certificate="files", certificate_files=files)]})
    check_login_kept([ROLE], config, merge_role_variables([ROLE], config.vars, "test"))


def ufw_variables(rules: list[dict[str, Any]]) -> dict[str, Any]:
    return merge_role_variables([UFW, ROLE], {"nginx_upstreams": UPSTREAMS,
                                              "nginx_sites": [site()], "ufw_rules": rules},
                                "test")


def test_a_firewall_that_keeps_443_closed_is_refused() -> None:
    with pytest.raises(RoleError, match="port 443"):
        validate_inventory(ufw_variables([{"port": 80, "proto": "tcp"}]),
                           InventoryView.of_hosts([]))


def test_a_firewall_opening_80_and_443_passes() -> None:
    validate_inventory(ufw_variables([{"port": 80, "proto": "tcp"}, {"port": 443}]),
                       InventoryView.of_hosts([]))


SHOP = Site("shop", ("shop.example.test", "www.shop.example.test"), "self-signed")
CURRENT = ("key 600 root:root\nX509v3 Subject Alternative Name: \n"
           "    DNS:shop.example.test, DNS:www.shop.example.test\nCertificate will not expire\n")


def test_certificate_paths_per_source() -> None:
    assert certificate_paths(SHOP) == ("/etc/nginx/tls/shop/fullchain.pem",
                                       "/etc/nginx/tls/shop/privkey.pem")
    acme = Site("shop", ("shop.example.test",), "acme")
    assert certificate_paths(acme) == ("/etc/letsencrypt/live/shop/fullchain.pem",
                                       "/etc/letsencrypt/live/shop/privkey.pem")


def test_read_sites_returns_sites_with_their_names() -> None:
    variables = merge_role_variables([ROLE], {"nginx_upstreams": UPSTREAMS,
                                              "nginx_sites": [site()]}, "test")
    (found,) = read_sites(variables)
    assert found.name == "shop" and found.server_names == ("shop.example.test",)


def test_a_current_self_signed_certificate_is_kept() -> None:
    assert plan_self_signed(SHOP, CURRENT, "make").action is None


def test_a_missing_self_signed_certificate_is_made() -> None:
    assert plan_self_signed(SHOP, "missing\n", "make").action == "make"


def test_a_self_signed_certificate_is_made_again_when_the_names_change() -> None:
    output = CURRENT.replace(", DNS:www.shop.example.test", "")
    assert plan_self_signed(SHOP, output, "make").action == "make"


def test_a_self_signed_certificate_is_made_again_when_it_nears_expiry() -> None:
    output = CURRENT.replace("will not expire", "will expire")
    assert plan_self_signed(SHOP, output, "make").action == "make"


def test_the_certificate_names_are_read_from_the_subject_alternative_name() -> None:
    assert certificate_names(CURRENT) == ("shop.example.test", "www.shop.example.test")


def test_the_self_signed_key_is_p256_and_made_under_umask_077() -> None:
    action = self_signed_action(SHOP, 365)
    assert "ec_paramgen_curve:P-256" in action and "umask 077" in action
    assert "-days 365" in action and "DNS:shop.example.test,DNS:www.shop.example.test" in action
    assert 'chmod 0600 "$new/privkey.pem"' in action


@pytest.mark.parametrize(("variable", "value"), [
    ("nginx_security_headers", {"X-Frame-Options": 'DENY" always; return 200 "x'}),
    ("nginx_security_headers", {"X Frame": "DENY"}),
    ("nginx_security_headers", "nosniff"),
    ("nginx_content_security_policy", "default-src 'self'\nreturn 200;"),
    ("nginx_hsts_max_age", "two years"),
    ("nginx_hsts_max_age", -1),
    ("nginx_hsts_include_subdomains", "yes"),
    ("nginx_worker_connections", 0),
    ("nginx_send_timeout", "10 seconds"),
    ("nginx_proxy_connect_timeout", True),
    ("nginx_ocsp_resolvers", "127.0.0.53"),
    ("nginx_ocsp_resolvers", ["127.0.0.53; return 200"]),
    ("nginx_ocsp_resolvers", ["[::1]:99999"]),
])
def test_an_http_level_value_nginx_would_misread_is_refused_naming_the_variable(
        variable: str, value: Any) -> None:
    assert variable in refused(site(), **{variable: value})


@pytest.mark.parametrize("resolvers", [["127.0.0.53"], ["[::1]:53", "10.0.0.2:5353"],
                                       ["dns.example.test"]])
def test_resolvers_with_and_without_ports_pass(resolvers: list[str]) -> None:
    validated(site(), nginx_ocsp_resolvers=resolvers)


@pytest.mark.parametrize("server", ["127.0.0.1:0", "127.0.0.1:70000", "app:8000 backup"])
def test_an_upstream_server_with_a_port_out_of_range_or_extra_words_is_refused(
        server: str) -> None:
    message = refused(site(), nginx_upstreams=[{"name": "api", "servers": [server]}])
    assert "'api'" in message and "1 to 65535" in message


@pytest.mark.parametrize("fields", [
    {"content_security_policy": "default-src 'self'; img-src *\n"},   # a folded YAML scalar
    {"server_names": ["shop.example.test", "www.shop.example.test\n"]},
    {"name": "shop\n"},
    {"client_max_body_size": "10m\n"},
    {"health_path": "/health\n"},
    {"locations": [{"path": "/", "upstream": "api", "headers": {"X-Note": "costs $5"}}]},
])
def test_a_value_with_a_trailing_line_break_or_a_dollar_is_refused(fields: dict[str, Any]) -> None:
    refused(site(**fields))


def test_an_upstream_server_with_a_trailing_line_break_is_refused() -> None:
    refused(site(), nginx_upstreams=[{"name": "api", "servers": ["127.0.0.1:8000\n"]}])
