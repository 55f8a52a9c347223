"""The nginx role on a hand-made host: what it renders for each nginx and OpenSSL version, the
security headers in every location, upstream and rate-limit lines, and the TLS block only once
the certificate is there."""

from __future__ import annotations

import subprocess
from typing import Any

import pytest

from provisioner.commands import quote
from provisioner.content.roles import PROJECT_ROOT, load_role
from provisioner.content.variables import merge_role_variables
from provisioner.host import Host
from provisioner.ops.config_set import ConfigFile
from provisioner.step import Probed, ProbeUnreadable, Step
from roles.nginx.configuration import rendered_files
from roles.nginx.role import (
    HANDLERS,
    RELOAD,
    WORKERS_BEFORE_RELOAD,
    listening,
    nginx_configuration,
    reload_handler,
)
from roles.nginx.tls import END, HostTls, parse_host_tls
from tests.unit.fakes import host_config

ROLE = load_role(PROJECT_ROOT / "roles" / "nginx")
BOOKWORM = ("nginx version: nginx/1.22.1\nbuilt with OpenSSL 3.0.11 19 Sep 2023 "
            "(running with OpenSSL 3.0.17 1 Jul 2025)\n")
TRIXIE = "nginx version: nginx/1.26.3\nbuilt with OpenSSL 3.5.0 8 Apr 2025\n"
SITE: dict[str, Any] = {
    "name": "shop", "server_names": ["shop.example.test", "www.shop.example.test"],
    "certificate": "self-signed", "health_path": "/health",
    "locations": [{"path": "/api/", "upstream": "api",
                   "rate_limit": {"zone": "api", "burst": 20, "nodelay": True},
                   "headers": {"Cache-Control": "no-store"}},
                  {"path": "/", "upstream": "web", "websocket": True}]}
VARIABLES: dict[str, Any] = {
    "nginx_upstreams": [
        {"name": "api", "servers": ["127.0.0.1:8000", "127.0.0.1:8001"],
         "balance": "least_conn", "max_fails": 3, "fail_timeout": "30s", "keepalive": 16},
        {"name": "web", "servers": ["127.0.0.1:9000"]}],
    "nginx_rate_limits": [{"zone": "api", "rate": "10r/s", "size": "10m"}],
    "nginx_sites": [SITE]}


def make_host(**overrides: Any) -> Host:
    variables = merge_role_variables([ROLE], {**VARIABLES, **overrides}, "test")
    config = host_config("web1", "10.0.0.5", roles=("nginx",))
    host = Host(config, variables, gather_facts=lambda: pytest.fail("no facts"))
    return host.for_role(ROLE.template_dir)


def host_tls(versions: str = BOOKWORM, *certificates: str, ipv6: bool = True) -> HostTls:
    lines = [versions, *(f"cert {name} \n" for name in certificates), "ipv6\n" if ipv6 else ""]
    return parse_host_tls("".join(lines) + END + "\n")[0]


def site_file(versions: str = BOOKWORM, *certificates: str, **overrides: Any) -> str:
    return rendered_files(make_host(**overrides), host_tls(versions, *certificates))[
        "/etc/nginx/sites-enabled/shop.conf"]


def nginx_conf(versions: str = BOOKWORM, **overrides: Any) -> str:
    return rendered_files(make_host(**overrides), host_tls(versions))["/etc/nginx/nginx.conf"]


def lines_of(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines()]


def locations(text: str) -> dict[str, list[str]]:
    """Each location's lines, by its path."""
    found: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in lines_of(text):
        if line.startswith("location "):
            current = found.setdefault(line.removeprefix("location ").rstrip(" {"), [])
        elif line == "}":
            current = None
        elif current is not None:
            current.append(line)
    return found


def test_debian_12_listens_with_the_http2_parameter() -> None:
    text = lines_of(site_file(BOOKWORM, "shop"))
    assert "listen 443 ssl http2;" in text and "http2 on;" not in text


def test_debian_13_turns_http2_on_with_its_own_directive() -> None:
    text = lines_of(site_file(TRIXIE, "shop"))
    assert "listen 443 ssl;" in text and "http2 on;" in text


def test_openssl_3_0_gets_no_post_quantum_curve() -> None:
    assert "ssl_ecdh_curve X25519:prime256v1:secp384r1;" in lines_of(nginx_conf(BOOKWORM))


def test_openssl_3_5_offers_x25519mlkem768_first() -> None:
    assert "ssl_ecdh_curve X25519MLKEM768:X25519:prime256v1:secp384r1;" in \
        lines_of(nginx_conf(TRIXIE))


def test_nginx_1_22_turns_session_tickets_off_and_1_26_leaves_them() -> None:
    assert "ssl_session_tickets off;" in lines_of(nginx_conf(BOOKWORM))
    assert "ssl_session_tickets off;" not in lines_of(nginx_conf(TRIXIE))


def test_the_openssl_nginx_runs_with_counts_over_the_one_it_was_built_with() -> None:
    tls = host_tls("nginx version: nginx/1.22.1\nbuilt with OpenSSL 3.0.2 (running with "
                   "OpenSSL 3.5.1 1 Jul 2025)\n")
    assert tls.openssl == (3, 5, 1)


@pytest.mark.parametrize("versions", [BOOKWORM, TRIXIE])
def test_only_tls_1_2_and_1_3_with_mozillas_ciphers(versions: str) -> None:
    text = lines_of(nginx_conf(versions))
    assert "ssl_protocols TLSv1.2 TLSv1.3;" in text
    assert "ssl_prefer_server_ciphers off;" in text
    assert any(line.startswith("ssl_ciphers ECDHE-ECDSA-AES128-GCM-SHA256:") for line in text)
    assert "server_tokens off;" in text


def test_without_its_certificate_a_site_has_no_tls_server() -> None:
    text = site_file(BOOKWORM)
    assert "listen 443" not in text and "ssl_certificate" not in text
    assert "return 308 https://$host$request_uri;" in lines_of(text)


def test_with_its_certificate_a_site_serves_tls_from_the_roles_directory() -> None:
    text = lines_of(site_file(BOOKWORM, "shop"))
    assert "ssl_certificate /etc/nginx/tls/shop/fullchain.pem;" in text
    assert "ssl_certificate_key /etc/nginx/tls/shop/privkey.pem;" in text


def test_an_acme_site_reads_certbots_live_lineage() -> None:
    site = {**SITE, "certificate": "acme"}
    text = lines_of(site_file(BOOKWORM, "shop", nginx_sites=[site]))
    assert "ssl_certificate /etc/letsencrypt/live/shop/fullchain.pem;" in text


def test_port_80_serves_the_acme_path_and_redirects_the_rest() -> None:
    found = locations(site_file(BOOKWORM))
    assert found["^~ /.well-known/acme-challenge/"] == ["root /var/www/letsencrypt;"]
    assert found["/"] == ["return 308 https://$host$request_uri;"]


def test_every_location_includes_the_security_headers() -> None:
    found = locations(site_file(BOOKWORM, "shop"))
    proxied = {path: lines for path, lines in found.items() if "proxy_pass" in " ".join(lines)}
    assert set(proxied) == {"= /health", "/api/", "/"}
    for lines in proxied.values():
        assert "include /etc/nginx/headers.d/shop.conf;" in lines


def test_a_location_with_its_own_header_still_sends_the_security_headers() -> None:
    lines = locations(site_file(BOOKWORM, "shop"))["/api/"]
    assert 'add_header Cache-Control "no-store" always;' in lines
    assert "include /etc/nginx/headers.d/shop.conf;" in lines


def test_the_headers_snippet_holds_hsts_and_the_security_headers() -> None:
    text = lines_of(rendered_files(make_host(), host_tls())["/etc/nginx/headers.d/shop.conf"])
    assert 'add_header Strict-Transport-Security "max-age=63072000" always;' in text
    assert 'add_header X-Content-Type-Options "nosniff" always;' in text
    assert 'add_header X-Frame-Options "SAMEORIGIN" always;' in text
    assert any(line.startswith("add_header Referrer-Policy ") for line in text)
    assert "add_header Content-Security-Policy \"default-src 'self'; frame-ancestors " \
        "'self'\" always;" in text


def test_a_sites_own_csp_overrides_the_default() -> None:
    site = {**SITE, "content_security_policy": "default-src 'none'"}
    text = rendered_files(make_host(nginx_sites=[site]), host_tls())[
        "/etc/nginx/headers.d/shop.conf"]
    assert "add_header Content-Security-Policy \"default-src 'none'\" always;" in text


def test_include_subdomains_only_when_asked() -> None:
    text = rendered_files(make_host(nginx_hsts_include_subdomains=True), host_tls())[
        "/etc/nginx/headers.d/shop.conf"]
    assert '"max-age=63072000; includeSubDomains"' in text


def test_upstream_lines_carry_balance_failures_and_keepalive() -> None:
    text = nginx_conf()
    block = text[text.index("upstream api {"):]
    upstream = [line for line in lines_of(block[:block.index("}")]) if line]
    assert upstream == ["upstream api {", "least_conn;",
                     "server 127.0.0.1:8000 max_fails=3 fail_timeout=30s;",
                     "server 127.0.0.1:8001 max_fails=3 fail_timeout=30s;", "keepalive 16;"]


def test_rate_limit_zone_status_and_location_limit() -> None:
    text = lines_of(nginx_conf())
    assert "limit_req_zone $binary_remote_addr zone=api:10m rate=10r/s;" in text
    assert "limit_req_status 429;" in text
    assert "limit_req zone=api burst=20 nodelay;" in locations(site_file(BOOKWORM, "shop"))["/api/"]


def test_health_path_is_proxied_without_access_log() -> None:
    lines = locations(site_file(BOOKWORM, "shop"))["= /health"]
    assert "access_log off;" in lines and "proxy_pass http://api;" in lines


def test_websocket_location_passes_the_upgrade() -> None:
    found = locations(site_file(BOOKWORM, "shop"))
    assert "proxy_set_header Connection $connection_upgrade;" in found["/"]
    assert 'proxy_set_header Connection "";' in found["/api/"]


def test_no_ipv6_listeners_without_ipv6_on_the_host() -> None:
    tls = host_tls(BOOKWORM, "shop", ipv6=False)
    text = rendered_files(make_host(), tls)["/etc/nginx/sites-enabled/shop.conf"]
    assert "[::]" not in text


def test_ocsp_stapling_only_when_the_certificate_names_a_responder() -> None:
    without = site_file(BOOKWORM, "shop")
    assert "ssl_stapling on;" not in without
    output = BOOKWORM + "cert shop http://ocsp.example.test\n" + END + "\n"
    tls, _ = parse_host_tls(output)
    text = rendered_files(make_host(), tls)["/etc/nginx/sites-enabled/shop.conf"]
    assert "ssl_stapling on;" in lines_of(text)


def configuration_step(**overrides: Any) -> Step:
    return nginx_configuration(make_host(**overrides))


def test_the_configuration_is_not_read_before_nginx_is_installed() -> None:
    step = configuration_step()
    with pytest.raises(ProbeUnreadable):
        step.decide(Probed("nginx missing\n" + END + "\n"))


def answered(step: Step, versions: str = BOOKWORM) -> Probed:
    """The step's probe as a host without nginx's files answers it (the config set's part run
    here, where /etc/nginx does not exist), behind the given nginx -V lines."""
    _, config_set_probe = step.probe.split(f"echo {quote(END)}\n", 1)
    result = subprocess.run(["sh", "-c", config_set_probe], capture_output=True, text=True,
                            check=False)
    return Probed(versions + END + "\n" + result.stdout, result.returncode)


def test_the_configuration_step_checks_with_nginx_t_before_anything_goes_live() -> None:
    step = configuration_step()
    plan = step.decide(answered(step))
    assert plan.action is not None and "nginx -t -q" in plan.action
    assert plan.all_or_nothing and step.notify == (RELOAD,)
    assert "/etc/nginx/sites-enabled/shop.conf" in plan.reason
    assert "TLS for no site yet" in plan.reason


def test_the_certbot_role_can_yield_the_same_step_with_its_own_handler() -> None:
    step = nginx_configuration(make_host(), notify=("certbot:nginx-reload",), label="again")
    assert step.notify == ("certbot:nginx-reload",) and step.label == "again"
    assert step.probe == configuration_step().probe


def test_the_reload_handler_reloads_never_restarts_and_waits_for_nginx() -> None:
    (handler,) = HANDLERS
    assert handler.name == RELOAD and handler.action.endswith("; systemctl reload nginx.service")
    assert "restart" not in handler.action
    assert reload_handler("certbot:reload").action == handler.action


def test_a_reload_is_ready_once_new_workers_run_and_the_old_ones_stopped_accepting() -> None:
    """systemctl reload returns once it signalled the master: the handler notes the workers
    before it and waits for a new one and for every old one to be shutting down, so
    "reloaded" means the new configuration serves (test_certbot's first request after the
    run met an old worker without this)."""
    (handler,) = HANDLERS
    assert handler.action.startswith("{ cat \"/proc/$(cat /run/nginx.pid)/task/")
    assert f"> {WORKERS_BEFORE_RELOAD}" in handler.action
    assert handler.ready is not None and WORKERS_BEFORE_RELOAD in handler.ready
    assert handler.ready.startswith("systemctl is-active --quiet nginx.service && ")
    assert "'shutting down' /proc/$worker/cmdline || exit 1" in handler.ready


def test_health_path_is_not_rate_limited() -> None:
    lines = locations(site_file(BOOKWORM, "shop"))["= /health"]
    assert not any(line.startswith("limit_req") for line in lines)


def test_the_listening_check_reads_proc_net_tcp() -> None:
    answer = ("  sl  local_address rem_address   st\n"
              "   0: 00000000:0050 00000000:0000 0A 00000000:00000000 00:00000000 00000000\n")
    done = subprocess.run(["sh", "-c", listening(80).replace("/proc/net/tcp /proc/net/tcp6",
                                                              "-")],
                          input=answer, text=True, check=False)
    assert done.returncode == 0
    missing = subprocess.run(["sh", "-c", listening(443).replace("/proc/net/tcp /proc/net/tcp6",
                                                                  "-")],
                             input=answer, text=True, check=False)
    assert missing.returncode == 1


FILES_SITE: dict[str, Any] = {
    "name": "files", "server_names": ["files.example.test"], "certificate": "files",
    "certificate_files": {"certificate": "CERT PEM", "key": "KEY PEM"},
    "locations": [{"path": "/", "upstream": "web"}]}


def test_a_files_sites_certificate_and_key_are_in_the_checked_set() -> None:
    files = rendered_files(make_host(nginx_sites=[FILES_SITE]), host_tls())
    chain = files["/etc/nginx/tls/files/fullchain.pem"]
    key = files["/etc/nginx/tls/files/privkey.pem"]
    assert isinstance(chain, ConfigFile) and chain.mode == 0o644 and chain.content == "CERT PEM\n"
    assert isinstance(key, ConfigFile) and key.mode == 0o600 and key.owner == "root"


def test_a_files_site_gets_its_tls_server_in_the_same_change_as_its_files() -> None:
    files = rendered_files(make_host(nginx_sites=[FILES_SITE]), host_tls())
    site = files["/etc/nginx/sites-enabled/files.conf"]
    assert isinstance(site, str)
    assert "ssl_certificate /etc/nginx/tls/files/fullchain.pem;" in lines_of(site)
