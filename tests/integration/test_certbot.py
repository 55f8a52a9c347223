"""certbot on real machines: a web host (nginx, certbot) and Debian's Pebble on another.

The web host gets a real certificate by HTTP-01 over the sandbox network; the chain nginx
serves verifies against Pebble's root from the controller (with SNI); sslyze finds the TLS
compliant with Mozilla's intermediate profile; certs.status shows the names and days left; a
second run changes nothing in one round trip; a forced renewal runs the deploy hook, and nginx
serves the new serial; a name added to the site expands the certificate and the TLS block serves
it in the same run; the role's spec passes. The tests run in order, each from the state the one
before left.
"""

from __future__ import annotations

import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from provisioner import sandbox
from provisioner.cli import certs, load
from provisioner.sandbox.acme import AcmeServer, start_acme_server
from roles.certbot.role import CA_BUNDLE
from tests.integration.conftest import (
    Invocation,
    edit_inventory,
    invoke_task,
    own_machines,
    root_output,
)

pytestmark = pytest.mark.integration

SITE = "shop"
NAMES = ["shop.example.test", "www.shop.example.test"]
ADDED = "api.shop.example.test"


@dataclass
class WebTier:
    web: sandbox.Machine
    pebble: sandbox.Machine
    acme: AcmeServer
    inventory: Path
    root_path: Path

    def provision(self, *arguments: str) -> Invocation:
        started = time.monotonic()
        run = invoke_task("provision", "--host", self.web.name, *arguments,
                          inventory=self.inventory, timeout=600,
                          report=self.inventory.parent / "report.json")
        result = run.report.get("hosts", {}).get(self.web.name, {})
        print(f"provision {' '.join(arguments)}: {time.monotonic() - started:.1f} s, exit "
              f"{run.exit_code}, {result.get('round_trips')} round trips")
        return run

    def edit_sites(self, names: list[str]) -> list[str]:
        """The site's server names set to ``names`` in the inventory; the old ones returned."""
        old: list[str] = []

        def edit(data: dict[str, Any]) -> None:
            variables = data["hosts"][self.web.name]["vars"]
            old.extend(variables["nginx_sites"][0]["server_names"])
            variables["nginx_sites"] = [site(names)]

        edit_inventory(self.inventory, edit)
        return old

    def served(self, name: str) -> dict[str, Any]:
        """The certificate nginx serves for ``name`` (SNI), verified against Pebble's root."""
        context = ssl.create_default_context(cafile=str(self.root_path))
        with socket.create_connection((self.web.address, 443), timeout=5) as raw, \
                context.wrap_socket(raw, server_hostname=name) as tls:
            return tls.getpeercert() or {}

    def served_serial(self) -> str:
        return str(self.served(NAMES[0])["serialNumber"])

    def new_serial_served(self, before: str) -> bool:
        """Whether nginx serves another serial within 10 s (the hook's reload is
        asynchronous)."""
        deadline = time.monotonic() + 10
        while self.served_serial() == before and time.monotonic() < deadline:
            time.sleep(0.1)
        return self.served_serial() != before


def site(names: list[str]) -> dict[str, Any]:
    return {"name": SITE, "server_names": names, "certificate": "acme",
            "locations": [{"path": "/", "upstream": "app"}]}


@pytest.fixture(scope="module")
def tier(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebTier]:
    with own_machines(tmp_path_factory, "cb", count=2) as (booted, inventory):
        web, pebble = booted
        acme = start_acme_server(pebble, dict.fromkeys([*NAMES, ADDED], web.address))

        def describe(data: dict[str, Any]) -> None:
            del data["hosts"][pebble.name]  # not provisioned: the sandbox helper set it up
            data["hosts"][web.name].update(groups=[], roles=["nginx", "certbot"], vars={
                "nginx_upstreams": [{"name": "app", "servers": ["127.0.0.1:8000"]}],
                "nginx_sites": [site(NAMES)],
                "certbot_email": "ops@example.org",
                "certbot_server": acme.directory_url,
                "certbot_server_ca": acme.api_ca_pem})

        edit_inventory(inventory, describe)
        root_path = inventory.parent / "pebble-root.pem"
        root_path.write_text(acme.root_pem())
        yield WebTier(web, pebble, acme, inventory, root_path)


def test_check_mode_on_a_fresh_host_changes_nothing(tier: WebTier) -> None:
    run = tier.provision("--check")

    assert run.exit_code == 0, run.output
    assert root_output(tier.web, "dpkg-query -W -f '${Status}' certbot 2>/dev/null; "
                                 "ls /etc/letsencrypt 2>/dev/null; true").strip() == ""


def test_the_first_run_gets_a_certificate_from_pebble_and_serves_it(tier: WebTier) -> None:
    run = tier.provision()

    assert run.exit_code == 0, run.output
    served = tier.served(NAMES[1])  # verified against Pebble's root, with SNI
    assert {value for kind, value in served["subjectAltName"]} == set(NAMES)


def test_sslyze_finds_the_tls_compliant_with_mozilla_intermediate(tier: WebTier) -> None:
    done = subprocess.run([sys.executable, "-m", "sslyze", "--mozilla_config=intermediate",
                           f"--certinfo_ca_file={tier.root_path}",
                           f"{NAMES[0]}:443{{{tier.web.address}}}"],
                          capture_output=True, text=True, timeout=120, check=False)

    assert "OK - Compliant." in done.stdout, done.stdout + done.stderr


def test_certs_status_shows_the_names_and_days_left(tier: WebTier) -> None:
    shown: list[str] = []

    code = certs.status(load(str(tier.inventory)), tier.web.name, "",
                        lambda text, error: shown.append(text))

    assert code == 0, shown
    text = "\n".join(shown)
    assert f"{SITE} (acme): {', '.join(NAMES)}" in text
    assert "(89 days left)" in text or "(90 days left)" in text, text
    assert "certbot.timer next runs" in text and "next renewal:" in text, text


def test_a_second_run_changes_nothing_in_one_round_trip(tier: WebTier) -> None:
    run = tier.provision()

    assert run.exit_code == 0, run.output
    result = run.report["hosts"][tier.web.name]
    assert (result["changed"], result["round_trips"]) == (0, 1), run.output


def test_a_forced_renewal_reloads_nginx_with_the_new_certificate(tier: WebTier) -> None:
    before = tier.served_serial()

    root_output(tier.web, f"REQUESTS_CA_BUNDLE={CA_BUNDLE} certbot renew --force-renewal "
                          f"--no-random-sleep-on-renew --cert-name {SITE}")

    assert tier.new_serial_served(before)


def test_the_renewal_service_renews_through_the_acme_servers_ca(tier: WebTier) -> None:
    before = tier.served_serial()
    conf = f"/etc/letsencrypt/renewal/{SITE}.conf"
    root_output(tier.web, f"sed -i '1i renew_before_expiry = 90 days' {conf}")

    try:
        root_output(tier.web, "systemctl start certbot.service")  # its drop-in's CA bundle
    finally:
        root_output(tier.web, f"sed -i '/^renew_before_expiry = 90 days$/d' {conf}")

    assert tier.new_serial_served(before)


def test_a_name_added_expands_the_certificate_in_one_run(tier: WebTier) -> None:
    tier.edit_sites([*NAMES, ADDED])

    run = tier.provision()

    assert run.exit_code == 0, run.output
    served = tier.served(ADDED)
    assert {value for kind, value in served["subjectAltName"]} == {*NAMES, ADDED}
    lineages = root_output(tier.web, "ls /etc/letsencrypt/live").split()
    assert lineages == [SITE] or sorted(lineages) == ["README", SITE], lineages


def test_a_failed_issuance_shows_the_acme_servers_own_words(tier: WebTier) -> None:
    unknown = "nowhere.example.test"  # Pebble cannot resolve it: the HTTP-01 check fails
    sites = tier.edit_sites([*NAMES, ADDED, unknown])

    run = tier.provision()

    tier.edit_sites(sites)
    assert run.exit_code == 1, run.output
    assert unknown in run.output and "no such host" in run.output, run.output


@pytest.mark.parametrize("damage", [f"rm -rf /etc/letsencrypt/live/{SITE}",
                                    f"rm /etc/letsencrypt/renewal/{SITE}.conf"])
def test_a_damaged_lineage_is_issued_again_under_its_own_name(tier: WebTier,
                                                              damage: str) -> None:
    root_output(tier.web, damage)

    run = tier.provision()

    assert run.exit_code == 0, run.output
    assert "lineage incomplete" in run.output, run.output
    served = tier.served(ADDED)
    assert {value for kind, value in served["subjectAltName"]} == {*NAMES, ADDED}
    for place in ("live", "archive", "renewal"):
        names = root_output(tier.web, f"ls /etc/letsencrypt/{place}").split()
        assert not any(name.startswith(f"{SITE}-0") for name in names), (place, names)
    assert tier.provision().report["hosts"][tier.web.name]["changed"] == 0


def test_the_spec_passes(tier: WebTier) -> None:
    run = invoke_task("verify", "--host", tier.web.name, inventory=tier.inventory,
                      report=tier.inventory.parent / "verify.json")

    assert run.exit_code == 0, run.output
