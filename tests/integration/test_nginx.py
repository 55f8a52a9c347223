"""nginx on a real machine: a web host (ng1) proxying to two API instances and one web backend,
tiny HTTP servers on the machine itself (transient systemd units, each answering its name).

Requests from the controller reach both API instances and keep succeeding with one stopped;
/api/ and / reach their own backends; past the rate limit the answer is 429; the security
headers come from every location; /health stays out of the access log; HTTP answers 308 except
the ACME path. sslyze judges the TLS of a self-signed site and a ``files`` one made here with
openssl. A variable nginx refuses fails the run with nginx's words while the site keeps serving.
A second run changes nothing in one round trip, ``--check`` on a fresh host (ng2) changes
nothing, and the spec passes. The tests run in order, each from the state the one before left.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from provisioner import sandbox
from provisioner.commands import quote
from tests.integration.conftest import (
    Invocation,
    edit_inventory,
    invoke_task,
    own_machines,
    root_output,
)

pytestmark = pytest.mark.integration

SHOP = "shop.example.test"
FILES = "files.example.test"
BACKENDS = {"ng-api-a": 8000, "ng-api-b": 8001, "ng-web": 9000}
#: Answers every GET with its unit's name: which backend served a request is then visible.
SERVER = ("import http.server, sys\n"
          "class H(http.server.BaseHTTPRequestHandler):\n"
          "    def do_GET(self):\n"
          "        body = sys.argv[1].encode()\n"
          "        self.send_response(200); self.send_header('Content-Length', str(len(body)))\n"
          "        self.end_headers(); self.wfile.write(body)\n"
          "    def log_message(self, *args): pass\n"
          "http.server.ThreadingHTTPServer(('127.0.0.1', int(sys.argv[2])), H).serve_forever()\n")
SECURITY_HEADERS = ("strict-transport-security", "x-content-type-options", "x-frame-options",
                    "referrer-policy", "content-security-policy")


def web_vars(files_certificate: Path, files_key: Path) -> dict[str, Any]:
    locations = [{"path": "/api/", "upstream": "api", "headers": {"Cache-Control": "no-store"},
                  "rate_limit": {"zone": "api", "burst": 50, "nodelay": True}},
                 {"path": "/limited/", "upstream": "web",
                  "rate_limit": {"zone": "tight", "burst": 2, "nodelay": True}},
                 {"path": "/", "upstream": "web"}]
    return {
        "nginx_upstreams": [
            {"name": "api", "servers": ["127.0.0.1:8000", "127.0.0.1:8001"],
             "balance": "least_conn", "max_fails": 3, "fail_timeout": "30s", "keepalive": 16},
            {"name": "web", "servers": ["127.0.0.1:9000"]}],
        "nginx_rate_limits": [{"zone": "api", "rate": "100r/s", "size": "10m"},
                              {"zone": "tight", "rate": "1r/s", "size": "1m"}],
        "nginx_sites": [
            {"name": "shop", "server_names": [SHOP, f"www.{SHOP}"],
             "certificate": "self-signed", "health_path": "/health", "locations": locations},
            {"name": "files", "server_names": [FILES], "certificate": "files",
             "certificate_files": {"certificate": files_certificate.read_text(),
                                   "key": {"secret": f"file:{files_key}"}},
             "locations": [{"path": "/", "upstream": "web"}]}],
    }


@dataclass
class Web:
    machine: sandbox.Machine
    fresh: sandbox.Machine
    inventory: Path
    directory: Path

    def provision(self, *arguments: str, host: str = "ng1") -> Invocation:
        started = time.monotonic()
        run = invoke_task("provision", "--host", host, *arguments, inventory=self.inventory,
                          report=self.directory / "report.json", timeout=600)
        print(f"provision {host} {' '.join(arguments)}: {time.monotonic() - started:.1f} s, "
              f"exit {run.exit_code}")
        return run

    def root(self, command: str) -> str:
        return root_output(self.machine, command)

    def curl(self, url: str, *options: str) -> tuple[int, dict[str, str], str]:
        """Status, lower-cased headers and body of one request from the controller."""
        port = "443" if url.startswith("https") else "80"
        name = url.split("/")[2]
        done = subprocess.run(["curl", "-sS", "-k", "-D", "-", "--max-time", "10",
                               "--resolve", f"{name}:{port}:{self.machine.address}", *options,
                               url], capture_output=True, text=True, check=True)
        head, _, body = done.stdout.partition("\n\n")  # text mode made each \r\n a \n
        status_line, *header_lines = head.split("\n")
        headers = {key.strip().lower(): value.strip() for key, _, value in
                   (line.partition(":") for line in header_lines)}
        return int(status_line.split()[1]), headers, body


def make_files_certificate(directory: Path) -> tuple[Path, Path]:
    """A certificate and key made here, on the controller, for the ``files`` site."""
    certificate, key = directory / "files.pem", directory / "files.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-days", "90", "-subj", f"/CN={FILES}",
                    "-set_serial", f"0x{uuid.uuid4().hex[:16]}", "-addext",
                    f"subjectAltName=DNS:{FILES}", "-addext", "basicConstraints=critical,CA:FALSE",
                    "-addext", "extendedKeyUsage=serverAuth", "-keyout", str(key),
                    "-out", str(certificate)], check=True, capture_output=True)
    key.chmod(0o600)
    return certificate, key


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Web]:
    with own_machines(tmp_path_factory, "ng", count=2) as (booted, inventory):
        machine, fresh = booted
        certificate, key = make_files_certificate(inventory.parent)
        names = {machine.name: "ng1", fresh.name: "ng2"}

        def edit(data: dict[str, Any]) -> None:
            data["hosts"] = {names[name]: {**host, "groups": [], "roles": ["nginx"],
                                           "vars": web_vars(certificate, key)}
                             for name, host in data["hosts"].items()}

        edit_inventory(inventory, edit)
        tier = Web(machine, fresh, inventory, inventory.parent)
        for unit, port in BACKENDS.items():
            start_backend(tier, unit, port)
        yield tier


def start_backend(web: Web, unit: str, port: int) -> None:
    web.root(f"systemctl stop {unit} 2>/dev/null; systemctl reset-failed {unit} 2>/dev/null; "
             f"systemd-run --unit {unit} --property DynamicUser=yes python3 -c "
             f"{quote(SERVER)} {unit} {port} >/dev/null 2>&1")


def test_first_run_sets_up_nginx_and_its_certificates(web: Web) -> None:
    run = web.provision()
    assert run.exit_code == 0, run.output
    assert "self-signed certificate for site shop" in run.output
    assert "handler nginx:reload" in run.output


def test_requests_reach_both_api_instances(web: Web) -> None:
    served = {web.curl(f"https://{SHOP}/api/x")[2] for _ in range(8)}
    assert served == {"ng-api-a", "ng-api-b"}


def test_api_and_root_reach_their_own_backends(web: Web) -> None:
    assert web.curl(f"https://{SHOP}/api/orders")[2] in {"ng-api-a", "ng-api-b"}
    assert web.curl(f"https://{SHOP}/")[2] == "ng-web"


def test_requests_still_succeed_with_one_api_instance_stopped(web: Web) -> None:
    web.root("systemctl stop ng-api-b")
    try:
        answers = [web.curl(f"https://{SHOP}/api/x")[:3:2] for _ in range(6)]
        assert answers == [(200, "ng-api-a")] * 6
    finally:
        start_backend(web, "ng-api-b", BACKENDS["ng-api-b"])


def test_past_the_rate_limit_requests_get_429(web: Web) -> None:
    statuses = [web.curl(f"https://{SHOP}/limited/")[0] for _ in range(8)]
    assert statuses[0] == 200 and 429 in statuses


@pytest.mark.parametrize("path", ["/", "/api/x", "/health", "/limited/"])
def test_the_security_headers_come_from_every_location(web: Web, path: str) -> None:
    time.sleep(1.1 if path == "/limited/" else 0)  # let the tight zone refill
    status, headers, _ = web.curl(f"https://{SHOP}{path}")
    assert status == 200
    assert all(name in headers for name in SECURITY_HEADERS), headers
    assert headers["strict-transport-security"] == "max-age=63072000"


def test_a_location_with_its_own_header_sends_it_too(web: Web) -> None:
    _, headers, _ = web.curl(f"https://{SHOP}/api/x")
    assert headers["cache-control"] == "no-store" and "x-frame-options" in headers


def test_health_is_proxied_but_not_access_logged(web: Web) -> None:
    health, other = uuid.uuid4().hex, uuid.uuid4().hex
    assert web.curl(f"https://{SHOP}/health?{health}")[0] == 200
    assert web.curl(f"https://{SHOP}/?{other}")[0] == 200
    log = web.root("cat /var/log/nginx/access.log")
    assert other in log and health not in log


def test_a_name_no_site_has_gets_no_sites_answer(web: Web) -> None:
    stranger = "stranger.example.test"
    by_address = subprocess.run(["curl", "-sS", "--max-time", "10",
                                 f"http://{web.machine.address}/"],
                                capture_output=True, text=True, check=False)
    assert by_address.returncode == 52, by_address  # empty reply: nginx's 444 closed it
    refused = subprocess.run(["curl", "-sS", "-k", "--max-time", "10", "--resolve",
                              f"{stranger}:443:{web.machine.address}", f"https://{stranger}/"],
                             capture_output=True, text=True, check=False)
    assert refused.returncode == 35, refused  # the TLS handshake is refused
    forged = subprocess.run(["curl", "-sS", "-k", "--http1.1", "--max-time", "10", "--resolve",
                             f"{SHOP}:443:{web.machine.address}", "-H", f"Host: {stranger}",
                             f"https://{SHOP}/"], capture_output=True, text=True, check=False)
    assert forged.returncode == 52, forged  # the site's SNI, another Host: closed (444)
    assert web.curl(f"https://{SHOP}/")[0] == 200


def test_http_answers_308_except_the_acme_path(web: Web) -> None:
    status, headers, _ = web.curl(f"http://{SHOP}/some/path?q=1")
    assert status == 308 and headers["location"] == f"https://{SHOP}/some/path?q=1"
    web.root("mkdir -p /var/www/letsencrypt/.well-known/acme-challenge && echo token-body > "
             "/var/www/letsencrypt/.well-known/acme-challenge/token1")
    status, _, body = web.curl(f"http://{SHOP}/.well-known/acme-challenge/token1")
    assert status == 200 and body.strip() == "token-body"


def sslyze(web: Web, name: str, ca_file: Path) -> str:
    done = subprocess.run([sys.executable, "-m", "sslyze", "--mozilla_config=intermediate",
                           f"--certinfo_ca_file={ca_file}",
                           f"{name}:443{{{web.machine.address}}}"],
                          capture_output=True, text=True, check=False, timeout=120)
    return done.stdout + done.stderr


def test_the_self_signed_site_is_mozilla_intermediate_compliant(web: Web) -> None:
    certificate = web.directory / "shop.pem"
    certificate.write_text(web.root("cat /etc/nginx/tls/shop/fullchain.pem"))
    output = sslyze(web, SHOP, certificate)
    assert f"{SHOP}:443: OK - Compliant." in output, output
    for version in ("TLS 1.0", "TLS 1.1"):
        section = output[output.index(f"* {version} Cipher Suites:"):]
        assert "rejected all cipher suites" in section.split("\n *")[0], section[:400]


def test_the_files_site_serves_the_controllers_certificate(web: Web) -> None:
    output = sslyze(web, FILES, web.directory / "files.pem")
    assert f"{FILES}:443: OK - Compliant." in output, output
    mode = web.root("stat -c '%a %U' /etc/nginx/tls/files/privkey.pem").split()
    assert mode == ["600", "root"]


def test_nginx_runs_our_protocols_only(web: Web) -> None:
    dump = web.root("nginx -T 2>/dev/null")
    protocols = {line.strip() for line in dump.splitlines()
                 if line.strip().startswith("ssl_protocols")}
    assert protocols == {"ssl_protocols TLSv1.2 TLSv1.3;"}
    assert "server_tokens off;" in dump


def test_tls_follows_the_hosts_own_nginx_and_openssl(web: Web) -> None:
    versions = web.root("nginx -V 2>&1")
    nginx = tuple(int(part) for part in versions.split("nginx/")[1].split()[0].split("."))
    openssl = tuple(int(part) for part in
                    versions.split("OpenSSL ")[-1].split()[0].split(".")[:2])
    dump = web.root("nginx -T 2>/dev/null")
    assert ("http2 on;" in dump) == (nginx >= (1, 25, 1))
    assert ("listen 443 ssl http2;" in dump) == (nginx < (1, 25, 1))
    assert ("X25519MLKEM768" in dump) == (openssl >= (3, 5))


def test_a_configuration_nginx_refuses_fails_the_run_and_the_site_keeps_serving(
        web: Web) -> None:
    original = web.inventory.read_text()
    edit_inventory(web.inventory, lambda data: data["hosts"]["ng1"]["vars"]["nginx_upstreams"]
                   [1].update(servers=["backend.invalid:9000"]))
    answers: list[tuple[int, str]] = []
    stop = threading.Event()

    def keep_asking() -> None:
        while not stop.is_set():
            status, _, body = web.curl(f"https://{SHOP}/")
            answers.append((status, body))
            time.sleep(0.1)

    asking = threading.Thread(target=keep_asking)
    asking.start()
    try:
        run = web.provision()
    finally:
        stop.set()
        asking.join()
        web.inventory.write_text(original)
    assert run.exit_code == 1
    assert 'host not found in upstream "backend.invalid:9000"' in run.output
    assert answers and set(answers) == {(200, "ng-web")}
    assert web.curl(f"https://{SHOP}/")[:3:2] == (200, "ng-web")
    assert "backend.invalid" not in web.root("cat /etc/nginx/nginx.conf")


def test_a_files_key_that_does_not_match_its_certificate_never_goes_live(web: Web) -> None:
    original = web.inventory.read_text()
    other = web.directory / "other.key"
    subprocess.run(["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-out", str(other)], check=True)
    before = web.root("sha256sum /etc/nginx/tls/files/privkey.pem")
    edit_inventory(web.inventory, lambda data: data["hosts"]["ng1"]["vars"]["nginx_sites"][1]
                   ["certificate_files"].update(key={"secret": f"file:{other}"}))
    try:
        run = web.provision()
    finally:
        web.inventory.write_text(original)
    assert run.exit_code == 1
    assert "key values mismatch" in run.output, run.output
    assert other.read_text().strip() not in run.output
    assert web.root("sha256sum /etc/nginx/tls/files/privkey.pem") == before
    assert web.curl(f"https://{FILES}/")[:3:2] == (200, "ng-web")


def test_second_run_changes_nothing_in_one_round_trip(web: Web) -> None:
    run = web.provision()
    assert run.exit_code == 0, run.output
    host = run.report["hosts"]["ng1"]
    assert host["changed"] == 0 and host["round_trips"] == 1, run.output


def test_check_on_a_fresh_host_changes_nothing(web: Web) -> None:
    run = web.provision("--check", host="ng2")
    assert run.exit_code == 0, run.output
    assert "would change" in run.output
    assert root_output(web.fresh, "dpkg-query -W -f '${Status}' nginx 2>/dev/null || true") \
        .strip() != "install ok installed"
    assert root_output(web.fresh, "ls /etc/nginx 2>/dev/null || true").strip() == ""


def test_the_verify_spec_passes(web: Web) -> None:
    run = invoke_task("verify", "--host", "ng1", inventory=web.inventory,
                      report=web.directory / "verify.json")
    assert run.exit_code == 0, run.output
