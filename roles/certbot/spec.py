"""certbot spec: certbot installed, its renewal timer enabled and active, and each acme site's
lineage holding the site's names, renewed from the inventory's server with the deploy hook (and
the renewal service trusting the server's CA when the inventory gives one)."""

from __future__ import annotations

from typing import Any

from roles.certbot.role import CA_BUNDLE, DEPLOY_HOOK, DROP_IN, acme_sites


def test_certbot_is_installed(host: Any) -> None:
    assert host.package("certbot").is_installed


def test_the_renewal_timer_is_enabled_and_active(host: Any) -> None:
    timer = host.service("certbot.timer")
    assert timer.is_enabled and timer.is_running


def test_each_acme_site_has_a_lineage_with_its_names(host: Any,
                                                     role_vars: dict[str, Any]) -> None:
    for site in acme_sites(role_vars):
        names = host.check_output(f"openssl x509 -in /etc/letsencrypt/live/{site.name}/cert.pem"
                                  " -noout -ext subjectAltName")
        found = {part.strip().removeprefix("DNS:") for part in names.splitlines()[-1].split(",")}
        assert found == set(site.server_names), site.name


def test_each_renewal_conf_names_the_server_and_the_deploy_hook(
        host: Any, role_vars: dict[str, Any]) -> None:
    for site in acme_sites(role_vars):
        conf = host.file(f"/etc/letsencrypt/renewal/{site.name}.conf").content_string
        assert f"server = {role_vars['certbot_server']}\n" in conf, site.name
        assert f"renew_hook = {DEPLOY_HOOK}\n" in conf, site.name
        assert "authenticator = webroot\n" in conf, site.name


def test_the_deploy_hook_tests_nginx_before_reloading(host: Any) -> None:
    hook = host.file(DEPLOY_HOOK)
    assert hook.mode == 0o755 and hook.user == "root"
    assert hook.content_string.index("nginx -t") < hook.content_string.index("reload nginx")


def test_the_renewal_service_trusts_the_servers_ca_when_one_is_given(
        host: Any, role_vars: dict[str, Any]) -> None:
    environment = host.check_output("systemctl show certbot.service -p Environment --value")
    if not role_vars["certbot_server_ca"]:
        assert not host.file(DROP_IN).exists  # the system's CAs
        return
    assert f"REQUESTS_CA_BUNDLE={CA_BUNDLE}" in environment
    assert host.file(CA_BUNDLE).content_string.strip() == role_vars["certbot_server_ca"].strip()
