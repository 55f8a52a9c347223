"""nginx spec: running, its whole configuration accepted by nginx -t, each site's files there,
no default vhost, a TLS listener with a certificate for each site whose certificate exists, and
server_tokens off."""

from __future__ import annotations

from typing import Any

from roles.nginx.role import listening
from roles.nginx.sites import certificate_paths, read_sites


def test_nginx_is_running_and_enabled(host: Any) -> None:
    service = host.service("nginx")
    assert service.is_running and service.is_enabled


def test_the_whole_configuration_passes_nginx_t(host: Any) -> None:
    assert host.run("nginx -t -q").rc == 0


def test_each_sites_configuration_is_present(host: Any, role_vars: dict[str, Any]) -> None:
    for site in read_sites(role_vars):
        text = host.file(f"/etc/nginx/sites-enabled/{site.name}.conf").content_string
        assert all(name in text for name in site.server_names)
        assert host.file(f"/etc/nginx/headers.d/{site.name}.conf").is_file


def test_debians_default_vhost_is_gone(host: Any) -> None:
    assert not host.file("/etc/nginx/sites-enabled/default").exists


def test_each_site_with_a_certificate_listens_for_tls_with_it(host: Any,
                                                             role_vars: dict[str, Any]) -> None:
    dump = host.check_output("nginx -T 2>/dev/null")
    for site in read_sites(role_vars):
        chain, key = certificate_paths(site)
        if host.file(chain).exists and host.file(key).exists:
            assert f"ssl_certificate {chain};" in dump
            assert f"ssl_certificate_key {key};" in dump
            if site.certificate != "acme":  # certbot's live/ holds links into archive/
                assert host.file(key).mode == 0o600
    if any(host.file(certificate_paths(site)[0]).exists for site in read_sites(role_vars)):
        assert host.run(listening(443)).rc == 0


def test_server_tokens_are_off(host: Any) -> None:
    assert "server_tokens off;" in host.check_output("nginx -T 2>/dev/null")
