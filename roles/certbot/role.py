"""certbot: Let's Encrypt (or any RFC 8555 server's) certificates for nginx's acme sites.

Implements controls.md §9 with Debian's certbot: webroot issuance through nginx's port-80
server (no standalone downtime, no plugin editing the files the nginx role owns), one lineage
per acme site (cert name = site name, ``-d`` each server name), the account e-mail, the ACME
directory (Let's Encrypt production by default) and, for a private server such as Pebble, its
CA: written on the host, given to every certbot call as REQUESTS_CA_BUNDLE and to the renewal
service by a certbot.service drop-in (certbot uses requests, which ignores the system's store).

The deploy hook (``nginx -t``, then a reload) is passed as ``--deploy-hook`` on issuance: files
in renewal-hooks/deploy do not run on a first issuance (docs/acme-in-the-sandbox.md), and
certbot keeps the command line's hook in the renewal conf for every renewal. After the
issuance steps the role yields nginx's configuration step again, so the TLS block of a site
issued in this run goes live in the same run.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from provisioner.host import Host
from provisioner.inventory.view import InventoryView
from provisioner.ops.apt import ensure_packages
from provisioner.ops.files import ensure_absent, ensure_template
from provisioner.ops.systemd import ensure_service
from provisioner.step import Handler, Step
from roles.certbot.issuance import Wanted, domains_of, ensure_certificate
from roles.certbot.settings import check_roles_order, check_variables
from roles.nginx import role as nginx_role
from roles.nginx.role import nginx_configuration, reload_handler
from roles.nginx.sites import ACME_WEBROOT, Site, read_sites

#: The hook certbot runs after each issuance and renewal.
DEPLOY_HOOK = "/usr/local/sbin/provisioner-certbot-deploy"
#: The ACME server's CA, when the inventory gives one.
CA_BUNDLE = "/etc/letsencrypt/provisioner-acme-ca.pem"
DROP_IN = "/etc/systemd/system/certbot.service.d/provisioner-acme-ca.conf"
TIMER = "certbot.timer"
NGINX_RELOAD = "nginx:reload"
DAEMON_RELOAD = "systemd:daemon-reload"
#: nginx's configuration step renders nginx's templates, whichever role yields it.
NGINX_TEMPLATES = Path(nginx_role.__file__).parent / "templates"

HANDLERS: tuple[Handler, ...] = (Handler(DAEMON_RELOAD, "systemctl daemon-reload"),
                                 reload_handler(NGINX_RELOAD))

TEMPLATE_ARGUMENTS = {"etc/systemd/system/certbot.service.d/provisioner-acme-ca.conf.j2":
                      {"ca_bundle"}}


def steps(host: Host) -> Iterator[Step]:
    yield ensure_packages(host, host.vars["certbot_packages"])
    yield from ca_steps(host)
    yield ensure_template(host, DEPLOY_HOOK, "usr/local/sbin/provisioner-certbot-deploy.j2",
                          mode=0o755, label=f"template {DEPLOY_HOOK} (nginx -t, reload)")
    for site in acme_sites(host.vars):
        yield ensure_certificate(wanted(host.vars, site))
    yield ensure_service(host, TIMER, label=f"service {TIMER} enabled and active")
    yield nginx_configuration(host.for_role(NGINX_TEMPLATES), notify=[NGINX_RELOAD],
                              label="nginx configuration with the issued certificates")


def ca_steps(host: Host) -> Iterator[Step]:
    """The ACME server's CA and the renewal service's drop-in naming it, or neither."""
    pem = host.vars["certbot_server_ca"]
    if not pem:
        yield ensure_absent(host, DROP_IN, notify=[DAEMON_RELOAD])
        yield ensure_absent(host, CA_BUNDLE)
        return
    yield ensure_template(host, CA_BUNDLE, "etc/letsencrypt/provisioner-acme-ca.pem.j2",
                          label=f"template {CA_BUNDLE} (the ACME server's CA)")
    yield ensure_template(host, DROP_IN, "etc/systemd/system/certbot.service.d/"
                          "provisioner-acme-ca.conf.j2", notify=[DAEMON_RELOAD],
                          ca_bundle=CA_BUNDLE)


def acme_sites(variables: Mapping[str, Any]) -> list[Site]:
    return [site for site in read_sites(variables) if site.certificate == "acme"]


def wanted(variables: Mapping[str, Any], site: Site) -> Wanted:
    """What the site's lineage must be, from the inventory."""
    return Wanted(site.name, domains_of(site.server_names), variables["certbot_server"],
                  variables["certbot_email"], ACME_WEBROOT, DEPLOY_HOOK,
                  variables["certbot_key_type"],
                  CA_BUNDLE if variables["certbot_server_ca"] else "")


def validate(variables: Mapping[str, Any]) -> None:
    """Refuse, before contact, what certbot could not use: acme sites without an e-mail, a
    directory that is not https, a CA that is not PEM, a key type certbot lacks."""
    check_variables(variables, [site.name for site in acme_sites(variables)])


def validate_inventory(variables: Mapping[str, Any], inventory: InventoryView) -> None:
    """The one hook that sees the host's own roles: nginx must come before certbot. (A host
    with nginx acme sites but no certbot is nginx's validate_inventory to refuse: this role's
    hooks run only where it is.)"""
    name = variables["host_name"]
    peer = inventory.host(name)
    if peer is not None:
        check_roles_order(name, peer.roles)
