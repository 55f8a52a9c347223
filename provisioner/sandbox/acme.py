"""A real ACME server on a sandbox machine: Debian's Pebble, for certbot to get certificates
from over the sandbox network (integration tests, the full-stack test, the benchmark).

Debian's package ships no certificates and no unit (docs/acme-in-the-sandbox.md), so this makes
Pebble's API certificate with openssl (a CA of its own, the machine's address in the SAN),
writes the config (validation on port 80, 90-day certificates, which sslyze accepts) and a unit
of its own, and resolves the sites' names to the web machines through the Pebble machine's
/etc/hosts (Pebble uses the system resolver). Calling it again on a running machine keeps the
running Pebble, whose accounts and roots live only in its memory.
"""

from __future__ import annotations

import json
import shlex
import ssl
import time
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass

from provisioner.sandbox.errors import SandboxError
from provisioner.sandbox.machine import Machine
from provisioner.sandbox.process import run
from provisioner.sandbox.ssh import ssh_argv

API_PORT, MANAGEMENT_PORT = 14000, 15000
CONFIG_DIR = "/etc/pebble"
UNIT = "provisioner-pebble.service"
#: The /etc/hosts lines this module owns end with this mark, so names can be replaced.
HOSTS_MARK = "# provisioner-acme"
#: Seconds the directory has to answer after Pebble starts (it takes under one).
READY_TIMEOUT = 30.0
#: 90 days: without it Pebble's certificates last 5 years and sslyze fails them.
VALIDITY_SECONDS = 7776000

_UNIT_TEXT = f"""[Unit]
Description=Pebble ACME test server (provisioner sandbox)
After=network.target

[Service]
Environment=PEBBLE_VA_NOSLEEP=1 PEBBLE_WFE_NONCEREJECT=0 PEBBLE_AUTHZREUSE=0
ExecStart=/usr/bin/pebble -config {CONFIG_DIR}/pebble-config.json
DynamicUser=yes
Restart=on-failure

[Install]
WantedBy=multi-user.target
"""


@dataclass(frozen=True)
class AcmeServer:
    """A running Pebble: its directory, the CA its API certificate is signed by (what
    certbot_server_ca takes) and, fetched when asked, the root it issues under."""

    machine: Machine
    directory_url: str
    api_ca_pem: str

    def root_pem(self) -> str:
        """The issuing root (new on every Pebble start): what served chains verify against."""
        return self._management("/roots/0")

    def intermediate_pem(self) -> str:
        return self._management("/intermediates/0")

    def add_names(self, names: Mapping[str, str]) -> None:
        """Resolve more server names (name -> web machine address) for Pebble's validation."""
        _on_machine(self.machine, hosts_script(names))

    def _management(self, path: str) -> str:
        url = f"https://{self.machine.address}:{MANAGEMENT_PORT}{path}"
        return _fetch(url, self.api_ca_pem)


def start_acme_server(machine: Machine, names: Mapping[str, str]) -> AcmeServer:
    """Pebble installed, configured and running on ``machine``, resolving ``names``."""
    _on_machine(machine, setup_script(machine.address) + hosts_script(names) + START_SCRIPT)
    ca = _on_machine(machine, f"cat {CONFIG_DIR}/api-ca.pem")
    server = AcmeServer(machine, f"https://{machine.address}:{API_PORT}/dir", ca)
    _wait_for_directory(server)
    return server


def pebble_config() -> str:
    return json.dumps({"pebble": {
        "listenAddress": f"0.0.0.0:{API_PORT}",
        "managementListenAddress": f"0.0.0.0:{MANAGEMENT_PORT}",
        "certificate": f"{CONFIG_DIR}/api.pem", "privateKey": f"{CONFIG_DIR}/api.key",
        "httpPort": 80, "tlsPort": 443, "ocspResponderURL": "",
        "externalAccountBindingRequired": False,
        "certificateValidityPeriod": VALIDITY_SECONDS}}, indent=2)


def setup_script(address: str) -> str:
    """Shell (as root): pebble and openssl installed, the API's CA and certificate made once,
    the config and unit written."""
    d = CONFIG_DIR
    san = f"subjectAltName=DNS:pebble,DNS:localhost,IP:{address},IP:127.0.0.1"
    return f"""set -e
if ! command -v pebble >/dev/null || ! command -v openssl >/dev/null; then
  apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
pebble openssl >/dev/null
fi
mkdir -p {d}
if [ ! -s {d}/api.pem ] || ! grep -qx {shlex.quote(address)} {d}/api.address 2>/dev/null; then
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
-subj '/CN=sandbox pebble API CA' -keyout {d}/api-ca.key -out {d}/api-ca.pem 2>/dev/null
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj '/CN=pebble' \
-keyout {d}/api.key -out {d}/api.csr 2>/dev/null
  printf '%s\\n' {shlex.quote(san)} > {d}/api.ext
  openssl x509 -req -in {d}/api.csr -CA {d}/api-ca.pem -CAkey {d}/api-ca.key \
-CAcreateserial -days 3650 -extfile {d}/api.ext -out {d}/api.pem 2>/dev/null
  chmod 0644 {d}/api.key {d}/api.pem
  printf '%s\\n' {shlex.quote(address)} > {d}/api.address
fi
printf '%s\\n' {shlex.quote(pebble_config())} > {d}/pebble-config.json
printf '%s' {shlex.quote(_UNIT_TEXT)} > /etc/systemd/system/{UNIT}
"""


def hosts_script(names: Mapping[str, str]) -> str:
    """Shell (as root): each name's line in /etc/hosts, replacing this module's earlier one."""
    lines = []
    for name, address in names.items():
        if not name or any(char.isspace() for char in name + address):
            raise SandboxError(f"cannot resolve {name!r} to {address!r}: not a host name and "
                               "an address")
        entry = f"{address} {name} {HOSTS_MARK}"
        lines.append(f"sed -i '/ {name.replace('.', '[.]')} {HOSTS_MARK}$/d' /etc/hosts && "
                     f"printf '%s\\n' {shlex.quote(entry)} >> /etc/hosts")
    return "\n".join(lines) + "\n"


#: Started once; a running Pebble is kept (a restart would lose its accounts and roots).
START_SCRIPT = f"""systemctl daemon-reload
systemctl enable -q {UNIT}
systemctl is-active -q {UNIT} || systemctl start {UNIT}
"""


def _on_machine(machine: Machine, script: str) -> str:
    return run([*ssh_argv(machine), "sudo -n sh -s"], input_text=script, timeout=300)


def _fetch(url: str, ca_pem: str, timeout: float = 5) -> str:
    context = ssl.create_default_context(cadata=ca_pem)
    with urllib.request.urlopen(url, context=context, timeout=timeout) as response:
        body: bytes = response.read()
    return body.decode()


def _wait_for_directory(server: AcmeServer) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while True:
        try:
            if "newAccount" in _fetch(server.directory_url, server.api_ca_pem):
                return
        except OSError as error:
            last = str(error)
        else:
            last = "the answer holds no newAccount"
        if time.monotonic() > deadline:
            raise SandboxError(f"Pebble on {server.machine.name} did not answer "
                               f"{server.directory_url} within {READY_TIMEOUT:g} s: {last}; "
                               f"`journalctl -u {UNIT}` there says why.")
        time.sleep(0.3)
