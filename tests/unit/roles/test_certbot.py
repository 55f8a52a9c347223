"""The certbot role's pure parts: the certbot call, the issuance decisions on recorded probe
output (same names, a name added, a name removed, another server), and the checks made before
contact."""

from __future__ import annotations

import os
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from provisioner.content.roles import PROJECT_ROOT, Role, load_role
from provisioner.content.variables import check_inventory_references, merge_role_variables
from provisioner.errors import RoleError
from provisioner.inventory.hosts import HostConfig
from provisioner.inventory.view import InventoryView
from roles.certbot.issuance import (
    Lineage,
    Wanted,
    certbot_command,
    issuance_action,
    lineage_probe,
    parse_lineage,
    plan_issuance,
)
from roles.certbot.settings import (
    check_email,
    check_key_type,
    check_roles_order,
    check_server,
    check_server_ca,
)
from tests.unit.fakes import SSH_SETTINGS

PEBBLE = "https://10.77.0.12:14000/dir"
HOOK = "/usr/local/sbin/provisioner-certbot-deploy"
SHOP = Wanted("shop", ("shop.example.test", "www.shop.example.test"), PEBBLE,
              "ops@example.org", "/var/www/letsencrypt", HOOK, "ecdsa")
#: lineage_probe's output on a host where certbot issued SHOP (certbot 2.1, OpenSSL 3.0).
ISSUED = f"""== conf
authenticator = webroot
server = {PEBBLE}
key_type = ecdsa
renew_hook = {HOOK}
== cert
present
X509v3 Subject Alternative Name: critical
    DNS:shop.example.test, DNS:www.shop.example.test
"""
CA = """-----BEGIN CERTIFICATE-----
MIIBeTCCAR+gAwIBAgIULnqrSAzxSorastsp7WYsaDlJDSgwCgYIKoZIzj0EAwIw
EjEQMA4GA1UEAwwHdGVzdCBDQTAeFw0yNjEyMDIyMTE0MTBaFw0yNjEyMDMyMTE0
MTBaMBIxEDAOBgNVBAMMB3Rlc3QgQ0EwWTATBgcqhkjOPQIBBggqhkjOPQMBBwNC
AARTEwveq/DBx2bbLTSbSK3Ai3AU7MBKOYWOInzUEDlQVgLuHbExlOZHjdnitfab
KLznoNsLV4v7iwgXVQ0BTsNuo1MwUTAdBgNVHQ4EFgQUohdIIkEvct0Huh3GNPkm
oqaWTHAwHwYDVR0jBBgwFoAUohdIIkEvct0Huh3GNPkmoqaWTHAwDwYDVR0TAQH/
BAUwAwEB/zAKBggqhkjOPQQDAgNIADBFAiEAr37T2U44oBuwlAITI6bHLV8actDU
+qPebm2IMYeBhYcCIDggWeH6+fXEfGXYqoviIpzC3+42ZMoZGsE1/JAl4IR4
-----END CERTIFICATE-----
"""


def test_the_probe_output_reads_as_the_lineage() -> None:
    lineage = parse_lineage(ISSUED)
    assert lineage == Lineage({"authenticator": "webroot", "server": PEBBLE, "key_type": "ecdsa",
                               "renew_hook": HOOK},
                              frozenset({"shop.example.test", "www.shop.example.test"}), True)


def test_a_host_without_the_lineage_gets_a_certificate() -> None:
    plan = plan_issuance(SHOP, parse_lineage("== conf\n== cert\n"))
    assert plan.reason == "no certificate yet"
    assert plan.action is not None and "--force-renewal" not in plan.action


def test_a_lineage_with_the_same_names_and_server_is_left_alone() -> None:
    plan = plan_issuance(SHOP, parse_lineage(ISSUED))
    assert plan.action is None
    assert plan.reason == f"shop.example.test, www.shop.example.test from {PEBBLE}"


def test_a_name_added_reissues_the_same_lineage_with_every_name() -> None:
    wanted = replace(SHOP, domains=(*SHOP.domains, "api.shop.example.test"))
    plan = plan_issuance(wanted, parse_lineage(ISSUED))
    assert plan.reason == "names added: api.shop.example.test"
    assert plan.action is not None
    assert "--cert-name shop -d shop.example.test -d www.shop.example.test -d " \
           "api.shop.example.test" in plan.action
    assert "--force-renewal" not in plan.action


def test_a_name_removed_reissues_the_same_lineage_without_it() -> None:
    wanted = replace(SHOP, domains=("shop.example.test",))
    plan = plan_issuance(wanted, parse_lineage(ISSUED))
    assert plan.reason == "names removed: www.shop.example.test"
    assert plan.action is not None and "-d www.shop.example.test" not in plan.action


def test_another_server_forces_a_new_certificate_from_it() -> None:
    wanted = replace(SHOP, server="https://acme-v02.api.letsencrypt.org/directory")
    plan = plan_issuance(wanted, parse_lineage(ISSUED))
    assert plan.reason == f"ACME server {PEBBLE} -> https://acme-v02.api.letsencrypt.org/directory"
    assert plan.action is not None and "--force-renewal" in plan.action


def test_a_lineage_without_our_deploy_hook_is_issued_again_with_it() -> None:
    plan = plan_issuance(SHOP, parse_lineage(ISSUED.replace(f"renew_hook = {HOOK}\n", "")))
    assert plan.reason == "deploy hook not set"
    assert plan.action is not None and f"--deploy-hook {HOOK}" in plan.action


def test_the_certbot_call_is_webroot_non_interactive_with_the_hook() -> None:
    assert certbot_command(SHOP) == (
        "certbot certonly --non-interactive --webroot -w /var/www/letsencrypt --cert-name shop "
        f"-d shop.example.test -d www.shop.example.test --server {PEBBLE} --agree-tos "
        f"--email=ops@example.org --no-eff-email --key-type ecdsa --deploy-hook {HOOK} --expand")


def test_a_private_ca_reaches_certbot_as_its_ca_bundle() -> None:
    command = certbot_command(replace(SHOP, ca_bundle="/etc/letsencrypt/ca.pem"))
    assert command.startswith("REQUESTS_CA_BUNDLE=/etc/letsencrypt/ca.pem certbot certonly ")


def test_a_failed_issuance_shows_certbot_output_and_its_log() -> None:
    plan = plan_issuance(SHOP, parse_lineage(""))
    assert plan.action is not None
    assert "grep -v -e '^Saving debug log' -e '^Ask for help' -e '^Hint:' -e '^$' | tail -n " \
           "30 >&2" in plan.action
    assert "tail -n 8 >&2" in plan.action


#: A certbot stand-in: what it does is the test's CERTBOT_DOES; like certbot, it starts
#: NAME-0001 when pieces of the lineage NAME are there.
FAKE_CERTBOT = """#!/bin/sh
le=$LE_ROOT/etc/letsencrypt
log=$LE_ROOT/var/log/letsencrypt/letsencrypt.log
case $CERTBOT_DOES in
fail) echo "$(date) :ERROR: fresh failure of this call" >> $log
      echo "An unexpected error occurred"; exit 1;;
issue) name=shop; [ ! -e $le/archive/shop ] && [ ! -e $le/renewal/shop.conf ] || name=shop-0001
      mkdir -p $le/live/$name $le/archive/$name; echo chain > $le/live/$name/fullchain.pem
      echo "server = x" > $le/renewal/$name.conf;;
esac
"""


def run_on_fake_host(tmp_path: Path, script: str, does: str) -> subprocess.CompletedProcess[str]:
    """script with /etc/letsencrypt and /var/log/letsencrypt under tmp_path, certbot faked."""
    (tmp_path / "bin").mkdir(exist_ok=True)
    (tmp_path / "bin" / "certbot").write_text(FAKE_CERTBOT)
    (tmp_path / "bin" / "certbot").chmod(0o755)
    for directory in ("etc/letsencrypt/renewal", "var/log/letsencrypt"):
        (tmp_path / directory).mkdir(parents=True, exist_ok=True)
    local = script.replace("/etc/letsencrypt", f"{tmp_path}/etc/letsencrypt") \
        .replace("/var/log/letsencrypt", f"{tmp_path}/var/log/letsencrypt")
    return subprocess.run(["sh", "-c", local], capture_output=True, text=True, check=False,
                          env={**os.environ, "PATH": f"{tmp_path}/bin:{os.environ['PATH']}",
                               "LE_ROOT": str(tmp_path), "CERTBOT_DOES": does})


def test_a_failure_shows_the_log_lines_of_this_call_only(tmp_path: Path) -> None:
    log = tmp_path / "var/log/letsencrypt/letsencrypt.log"
    log.parent.mkdir(parents=True)
    log.write_text("yesterday :ERROR: nope.example.test: no such host\n")
    action = plan_issuance(SHOP, parse_lineage("")).action
    assert action is not None

    done = run_on_fake_host(tmp_path, action, "fail")

    assert done.returncode == 1
    assert "fresh failure of this call" in done.stderr and "nope.example.test" not in done.stderr


def test_an_incomplete_lineage_is_cleared_and_issued_under_its_own_name(tmp_path: Path) -> None:
    (tmp_path / "etc/letsencrypt/archive/shop").mkdir(parents=True)
    (tmp_path / "etc/letsencrypt/renewal").mkdir(parents=True)
    (tmp_path / "etc/letsencrypt/renewal/shop.conf").write_text("")  # certbot left it empty
    probed = run_on_fake_host(tmp_path, lineage_probe("shop"), "")
    lineage = parse_lineage(probed.stdout)
    plan = plan_issuance(SHOP, lineage)
    assert lineage.damaged and "lineage incomplete" in plan.reason and plan.action is not None

    done = run_on_fake_host(tmp_path, plan.action, "issue")

    assert done.returncode == 0, done.stderr
    assert (tmp_path / "etc/letsencrypt/live/shop/fullchain.pem").exists()
    assert not (tmp_path / "etc/letsencrypt/live/shop-0001").exists()


def test_no_lineage_at_all_is_a_first_issuance_not_a_repair(tmp_path: Path) -> None:
    lineage = parse_lineage(run_on_fake_host(tmp_path, lineage_probe("shop"), "").stdout)
    assert not lineage.damaged and plan_issuance(SHOP, lineage).reason == "no certificate yet"


def test_certbot_succeeding_under_another_name_fails_the_step(tmp_path: Path) -> None:
    (tmp_path / "etc/letsencrypt/archive/shop").mkdir(parents=True)  # left by hand
    action = issuance_action(SHOP, force=False)  # as if the remains were not seen

    done = run_on_fake_host(tmp_path, action, "issue")

    assert done.returncode == 1 and "issued under another name" in done.stderr


def test_acme_sites_need_an_email() -> None:
    with pytest.raises(RoleError, match="certbot_email is not set, but nginx_sites shop uses"):
        check_email("", ["shop"])


def test_no_acme_site_needs_no_email() -> None:
    check_email("", [])


def test_an_email_must_look_like_one() -> None:
    with pytest.raises(RoleError, match="'ops' is not an e-mail address"):
        check_email("ops", ["shop"])


@pytest.mark.parametrize("server", ["http://10.77.0.12:14000/dir", "acme.example.org/dir",
                                    "https://", 42])
def test_the_acme_server_must_be_an_https_url(server: object) -> None:
    with pytest.raises(RoleError, match="is not an https URL of an ACME directory"):
        check_server(server)


def test_an_https_directory_is_accepted() -> None:
    check_server(PEBBLE)


@pytest.mark.parametrize("pem", ["not a certificate", CA.replace("MIIB", "MI!B"),
                                 CA + "trailing words", "-----BEGIN CERTIFICATE-----\n"])
def test_the_server_ca_must_be_pem(pem: str) -> None:
    with pytest.raises(RoleError, match="certbot_server_ca is not a PEM certificate"):
        check_server_ca(pem)


def test_a_pem_bundle_or_none_is_accepted() -> None:
    check_server_ca(CA + CA)
    check_server_ca("")


def test_the_key_type_is_one_certbot_has() -> None:
    with pytest.raises(RoleError, match="certbot_key_type 'dsa' is none of ecdsa, rsa"):
        check_key_type("dsa")


def test_certbot_without_nginx_is_refused() -> None:
    with pytest.raises(RoleError, match="has the certbot role but not the nginx role"):
        check_roles_order("web1", ("certbot",))


def test_certbot_before_nginx_is_refused() -> None:
    with pytest.raises(RoleError, match="lists certbot before nginx"):
        check_roles_order("web1", ("certbot", "nginx"))


def test_nginx_then_certbot_is_accepted() -> None:
    check_roles_order("web1", ("hardening", "nginx", "certbot"))


SITES = [{"name": "shop", "server_names": ["shop.example.test"], "certificate": "acme",
          "locations": [{"path": "/", "upstream": "app"}]}]
WEB_VARS = {"nginx_upstreams": [{"name": "app", "servers": ["127.0.0.1:8000"]}],
            "nginx_sites": SITES}


def web_roles() -> list[Role]:
    return [load_role(PROJECT_ROOT / "roles" / name) for name in ("nginx", "certbot")]


def test_an_inventory_with_acme_sites_and_no_email_is_refused_before_contact() -> None:
    with pytest.raises(RoleError, match="web1: certbot_email is not set, but nginx_sites shop"):
        merge_role_variables(web_roles(), WEB_VARS, "web1")


def test_a_plain_http_acme_server_is_refused_before_contact() -> None:
    with pytest.raises(RoleError, match="certbot_server 'http://pebble:14000/dir' is not an "
                                        "https URL"):
        merge_role_variables(web_roles(), {**WEB_VARS, "certbot_email": "ops@example.org",
                                           "certbot_server": "http://pebble:14000/dir"}, "web1")


def test_the_hosts_roles_are_judged_on_the_whole_inventory() -> None:
    roles = web_roles()
    variables = merge_role_variables(roles, {**WEB_VARS, "certbot_email": "ops@example.org"},
                                     "web1")
    config = HostConfig(name="web1", address="192.0.2.10", port=22, user="admin", groups=(),
                        roles=("certbot", "nginx"), vars={}, ssh=SSH_SETTINGS)
    with pytest.raises(RoleError, match="host web1: role certbot: host web1 lists certbot "
                                        "before nginx"):
        check_inventory_references(roles, config, variables, InventoryView.of_hosts([config]))
