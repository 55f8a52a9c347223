"""The Pebble helper's pure parts: its config, the API certificate's names, and the names sent
to the web machines through /etc/hosts."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from provisioner.sandbox import SandboxError
from provisioner.sandbox.acme import hosts_script, pebble_config, setup_script


def test_pebble_validates_on_port_80_and_issues_90_day_certificates() -> None:
    config = json.loads(pebble_config())["pebble"]
    assert (config["httpPort"], config["certificateValidityPeriod"]) == (80, 7776000)
    assert config["listenAddress"] == "0.0.0.0:14000"
    assert config["managementListenAddress"] == "0.0.0.0:15000"


def test_the_api_certificate_names_the_machines_address() -> None:
    script = setup_script("10.77.0.12")
    assert "subjectAltName=DNS:pebble,DNS:localhost,IP:10.77.0.12,IP:127.0.0.1" in script


def test_each_name_replaces_its_earlier_line_in_etc_hosts(tmp_path: Path) -> None:
    hosts = f"{tmp_path}/hosts"
    with open(hosts, "w") as file:
        file.write("127.0.0.1 localhost\n10.77.0.9 shop.example.test # provisioner-acme\n")
    script = hosts_script({"shop.example.test": "10.77.0.11", "www.shop.example.test":
                           "10.77.0.11"}).replace("/etc/hosts", hosts)

    subprocess.run(["sh", "-ec", script], check=True)

    with open(hosts) as file:
        assert file.read() == ("127.0.0.1 localhost\n"
                               "10.77.0.11 shop.example.test # provisioner-acme\n"
                               "10.77.0.11 www.shop.example.test # provisioner-acme\n")


def test_a_name_with_blanks_is_refused() -> None:
    with pytest.raises(SandboxError, match="not a host name and an address"):
        hosts_script({"shop example": "10.77.0.11"})
