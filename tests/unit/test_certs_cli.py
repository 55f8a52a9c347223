"""certs.status: the hosts and sites judged before contact, the host's answer read back, and
when certbot renews (its version's rule, or the lineage's own renew_before_expiry)."""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime
from pathlib import Path

import pytest

from provisioner.cli import certs, load
from provisioner.cli.certs import (
    CertificateStatus,
    HostStatus,
    SiteCertificate,
    describe,
    parse_status,
    renewal_due,
    status_script,
)
from provisioner.errors import ProvisionerError
from provisioner.inventory.hosts import Inventory
from tests.unit.fakes import never_shown

# Addresses of TEST-NET-1: a test that contacted them would hang, not pass.
INVENTORY = """\
    defaults:
      user: admin
      ssh: {known_hosts: /dev/null}
    hosts:
      web1:
        address: 192.0.2.10
        roles: [nginx, certbot]
        vars:
          certbot_email: ops@example.org
          nginx_upstreams: [{name: app, servers: ["127.0.0.1:8000"]}]
          nginx_sites:
            - {name: shop, server_names: [shop.example.test, www.shop.example.test],
               certificate: acme, locations: [{path: /, upstream: app}]}
            - {name: internal, server_names: [internal.example.test],
               certificate: self-signed, locations: [{path: /, upstream: app}]}
      db1: {address: 192.0.2.20, roles: [fail2ban]}
"""
SHOP = SiteCertificate("shop", "acme", "/etc/letsencrypt/live/shop/fullchain.pem")
INTERNAL = SiteCertificate("internal", "self-signed", "/etc/nginx/tls/internal/fullchain.pem")
#: status_script's output on a bookworm host (OpenSSL 3.0, certbot 2.1.0), Pebble's certificate.
ANSWER = """== site shop
issuer=CN = Pebble Intermediate CA 4a0b1c
notBefore=Dec  2 21:15:26 2026 GMT
notAfter=Mar  2 21:15:25 2027 GMT
X509v3 Subject Alternative Name: critical
    DNS:shop.example.test, DNS:www.shop.example.test
== site internal
missing
== version
certbot 2.1.0
== timer
Thu 2026-12-03 07:12:34 UTC
"""
NOW = datetime(2026, 12, 2, 21, 30, tzinfo=UTC)


@pytest.fixture
def inventory(tmp_path: Path) -> Inventory:
    path = tmp_path / "inventory.yml"
    path.write_text(textwrap.dedent(INVENTORY))
    return load(str(path))


def test_every_site_of_the_host_is_asked_about_with_its_certificate_path(
        inventory: Inventory) -> None:
    ((_job, sites),) = certs.certificate_jobs(inventory, "web1", "")
    assert sites == [SHOP, INTERNAL]


def test_hosts_with_sites_are_chosen_when_none_is_named(inventory: Inventory) -> None:
    assert [job.config.name for job, _ in certs.certificate_jobs(inventory, "", "")] == ["web1"]


def test_an_unknown_host_is_refused_before_contact(inventory: Inventory) -> None:
    with pytest.raises(ProvisionerError, match=r"--host web9: no such host"):
        certs.status(inventory, "web9", "", never_shown)


def test_a_host_without_sites_is_refused_before_contact(inventory: Inventory) -> None:
    with pytest.raises(ProvisionerError, match=r"host db1 of .* has no nginx_sites"):
        certs.status(inventory, "db1", "", never_shown)


def test_the_script_reads_the_renewal_conf_of_acme_sites_only() -> None:
    script = status_script([SHOP, INTERNAL])
    assert "/etc/letsencrypt/renewal/shop.conf" in script
    assert "/etc/letsencrypt/renewal/internal.conf" not in script
    assert "systemctl show certbot.timer -p NextElapseUSecRealtime --value" in script
    assert "certbot --version" in script


def test_the_answer_reads_as_names_issuer_dates_and_the_timer() -> None:
    state = parse_status(ANSWER, [SHOP, INTERNAL])
    shop, internal = state.certificates
    assert shop.names == ("shop.example.test", "www.shop.example.test")
    assert shop.issuer == "CN = Pebble Intermediate CA 4a0b1c"
    assert shop.not_after == datetime(2027, 3, 2, 21, 15, 25, tzinfo=UTC)
    assert internal.not_after is None
    assert state.certbot_version == (2, 1, 0)
    assert state.timer_next == "Thu 2026-12-03 07:12:34 UTC"


def test_certbot_2_renews_30_days_before_expiry() -> None:
    shop = parse_status(ANSWER, [SHOP]).certificates[0]
    due = renewal_due(shop, (2, 1, 0))
    assert due == (datetime(2027, 1, 31, 21, 15, 25, tzinfo=UTC),
                   "certbot 2.1.0: 30 days before expiry")


def test_certbot_4_renews_with_a_third_of_the_lifetime_left() -> None:
    shop = parse_status(ANSWER, [SHOP]).certificates[0]
    due = renewal_due(shop, (4, 0, 0))
    assert due is not None
    assert due[0] == datetime(2027, 1, 31, 21, 15, 25, 333333, tzinfo=UTC)
    assert due[1] == "certbot 4.0.0: 1/3 of the lifetime left"


def test_a_short_lived_certificate_renews_at_half_its_lifetime_on_certbot_4() -> None:
    cert = CertificateStatus(SHOP, not_before=datetime(2026, 12, 1, tzinfo=UTC),
                             not_after=datetime(2026, 12, 7, tzinfo=UTC))
    assert renewal_due(cert, (4, 0, 0)) == (datetime(2026, 12, 4, tzinfo=UTC),
                                            "certbot 4.0.0: 1/2 of the lifetime left")


def test_the_renewal_conf_own_threshold_wins() -> None:
    answer = ANSWER.replace("== site internal", "renew_before_expiry = 90 days\n== site internal")
    shop = parse_status(answer, [SHOP]).certificates[0]
    assert renewal_due(shop, (2, 1, 0)) == (datetime(2026, 12, 2, 21, 15, 25, tzinfo=UTC),
                                            "renew_before_expiry = 90 days")


def test_the_report_shows_days_left_and_the_next_renewal() -> None:
    lines, complete = describe("web1", parse_status(ANSWER, [SHOP]), NOW)
    assert complete
    assert lines == [
        "== web1", "shop (acme): shop.example.test, www.shop.example.test",
        "  issuer: CN = Pebble Intermediate CA 4a0b1c",
        "  not after: 2027-03-02 21:15 UTC (89 days left)",
        "  next renewal: 2027-01-31 21:15 UTC (certbot 2.1.0: 30 days before expiry); "
        "certbot.timer next runs Thu 2026-12-03 07:12:34 UTC"]


def test_a_certificate_not_there_yet_says_to_provision_and_fails() -> None:
    lines, complete = describe("web1", parse_status(ANSWER, [INTERNAL]), NOW)
    assert not complete
    assert lines[1] == ("internal (self-signed): no certificate at "
                        "/etc/nginx/tls/internal/fullchain.pem yet; provision the host "
                        "(invoke provision --host ...) first.")


def test_a_host_that_never_answered_has_no_certificates() -> None:
    state = HostStatus((CertificateStatus(SHOP),))
    assert describe("web1", state, NOW)[1] is False
