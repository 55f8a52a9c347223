"""nginx: Debian's nginx as the TLS-terminating reverse proxy of the inventory's sites.

Implements issue 17's nginx role and controls.md §8: upstreams with several instances, sites
with several locations each proxied to its upstream, per-IP rate limits, Mozilla intermediate
TLS for the host's own nginx and OpenSSL, HSTS and the security headers sent from every
location, HTTP answered with a 308 except the ACME challenge path, Debian's default vhost gone.

Every configuration change is one config set (configuration.py) that goes live only when
``nginx -t`` accepts the whole staged tree, and is followed by a reload, never a restart: a
reload keeps the running workers serving until the new ones are up, and nginx keeps the old
configuration when the new one fails to load. Certificates: self-signed ones made on the host,
the inventory's files written 0644/0600, acme ones left to the certbot role (which yields the
configuration step again once they exist).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from provisioner.commands import join
from provisioner.errors import RoleError
from provisioner.host import Host
from provisioner.inventory.hosts import HostConfig
from provisioner.inventory.view import InventoryView
from provisioner.ops.apt import ensure_packages
from provisioner.ops.files import ensure_directory
from provisioner.ops.systemd import ensure_service
from provisioner.secrets.host_store import HostSecret
from provisioner.secrets.values import Secret
from provisioner.step import Handler, Step
from roles.nginx import configuration
from roles.nginx.certificates import certificate_steps
from roles.nginx.http_settings import check_http_settings
from roles.nginx.sites import ACME_WEBROOT, Site, read_sites
from roles.nginx.upstreams import check_rate_limit_status, read_rate_limits, read_upstreams

RELOAD = "nginx:reload"
UNIT = "nginx.service"


def listening(port: int) -> str:
    """Read-only shell: something listens on this TCP port (from /proc: the minimal image has
    no ss)."""
    return (f"grep -Eq '^ *[0-9]+: [0-9A-F]+:{port:04X} [0-9A-F]+:0000 0A ' "
            "/proc/net/tcp /proc/net/tcp6 2>/dev/null")


#: nginx answers once its master process runs and a listener on port 80 accepts: a reload
#: that nginx refused leaves the old workers serving, so this stays true then too; the reload
#: itself fails (systemctl reports nginx's words) when the new configuration does not load.
READY = f"systemctl is-active --quiet {UNIT} && {listening(80)}"
TEMPLATE_ARGUMENTS = configuration.TEMPLATE_ARGUMENTS
#: The master's worker processes before a reload, so its readiness can tell the new ones.
WORKERS_BEFORE_RELOAD = "/run/nginx-reload.workers"
#: The nginx master's worker processes, by pid (the app role's deploys read them too).
WORKERS = 'cat "/proc/$(cat /run/nginx.pid)/task/$(cat /run/nginx.pid)/children"'
#: ``systemctl reload`` only signals the master and returns. The new configuration serves
#: once the master has started workers with it and every earlier worker has stopped accepting
#: (it renames itself "worker process is shutting down" as it closes its listening sockets,
#: then finishes its requests). Until then an old worker may still take a new connection with
#: the old configuration, so "reloaded" waits for both: a request right after the run (a
#: certificate just issued, the deploy moving an instance out) meets the new configuration,
#: and a reload nginx could not load fails the run.
RELOADED = (f"{READY} && before=\" $(cat {WORKERS_BEFORE_RELOAD}) \" && started=no && "
            f"for worker in $({WORKERS}); do case \"$before\" in "
            f"*\" $worker \"*) grep -qa 'shutting down' /proc/$worker/cmdline || exit 1;; "
            "*) started=yes;; esac; done; [ $started = yes ]")


def reload_handler(name: str) -> Handler:
    """``systemctl reload nginx`` (SIGHUP: new workers, old ones finish their requests), under
    the given name so the certbot role can declare the same reload as its own handler."""
    action = (f"{{ {WORKERS}; }} > {WORKERS_BEFORE_RELOAD} 2>/dev/null; "
              f"{join('systemctl', 'reload', UNIT)}")
    return Handler(name, action, ready=RELOADED, ready_timeout=30)


HANDLERS: tuple[Handler, ...] = (reload_handler(RELOAD),)


def nginx_configuration(host: Host, notify: Sequence[str] = (RELOAD,),
                        label: str = "") -> Step:
    """The one config-set step of the whole nginx configuration (configuration.py)."""
    return configuration.nginx_configuration(host, notify, label)


def steps(host: Host) -> Iterator[Step]:
    sites = read_sites(host.vars)
    yield ensure_packages(host, host.vars["nginx_packages"])
    yield ensure_directory(host, ACME_WEBROOT, label=f"directory {ACME_WEBROOT} (ACME webroot)")
    yield from certificate_steps(host, sites, notify=[RELOAD])
    yield nginx_configuration(host)
    yield ensure_service(host, UNIT, label=f"service {UNIT} enabled and running")


def validate(variables: Mapping[str, Any]) -> None:
    """Refuse, before contact, what nginx could not read or what would not do what was meant:
    a location's unknown upstream or zone, a rate that does not parse, a bad server name, a
    certificate source not one of the three, an http-level value nginx would misread."""
    read_upstreams(variables)
    read_rate_limits(variables)
    check_rate_limit_status(variables)
    read_sites(variables)
    check_http_settings(variables)
    for name in ("nginx_self_signed_days", "nginx_self_signed_renew_days"):
        if not isinstance(variables[name], int) or isinstance(variables[name], bool):
            raise RoleError(f"{name} is {variables[name]!r}; it is a whole number of days.")
    if not 1 <= variables["nginx_self_signed_days"] <= 366:
        raise RoleError(f"nginx_self_signed_days is {variables['nginx_self_signed_days']}; a "
                        "certificate may last at most 366 days (Mozilla's intermediate profile; "
                        "sslyze fails a longer one).")
    if not 0 < variables["nginx_self_signed_renew_days"] < variables["nginx_self_signed_days"]:
        raise RoleError("nginx_self_signed_renew_days must be more than 0 and less than "
                        "nginx_self_signed_days, or the certificate is made again on every run.")


def validate_login(config: HostConfig, variables: Mapping[str, Any]) -> None:
    """Refuse a certificate_files key written in the inventory as text. Not about the login:
    the one hook that sees the inventory's own values, where a reference is still a Secret."""
    sites = config.vars.get("nginx_sites")
    for site in sites if isinstance(sites, Sequence) and not isinstance(sites, str) else ():
        files = site.get("certificate_files") if isinstance(site, Mapping) else None
        key = files.get("key") if isinstance(files, Mapping) else None
        if key is not None and not isinstance(key, Secret | HostSecret):
            raise RoleError(f"nginx_sites: site {site.get('name')!r} has certificate_files.key "
                            "written in the inventory as text (not shown); a private key must "
                            "be a secret reference, so it is never in the inventory's file and "
                            "is masked in every diff: {secret: file:~/.secrets/<site>.key}.")


def validate_inventory(variables: Mapping[str, Any], inventory: InventoryView) -> None:
    """With the ufw role on the host, refuse a firewall that would keep 80 or 443 closed: the
    sites (and the ACME challenge) would be unreachable while every step reports ok. And refuse
    acme sites on a host without the certbot role: nothing would ever issue their certificates,
    so their TLS blocks would never be rendered while every run reports ok."""
    sites = read_sites(variables)
    check_acme_has_certbot(variables, inventory, sites)
    check_app_upstreams(variables, inventory)
    if "ufw_rules" not in variables or not sites:
        return
    for port in (80, 443):
        if not any(_opens(rule, port) for rule in variables["ufw_rules"]):
            raise RoleError(f"nginx serves sites but ufw_rules has no rule opening port {port} "
                            f"(tcp), so the firewall would drop their clients: add "
                            f"{{port: {port}, proto: tcp}} to ufw_rules.")


def check_acme_has_certbot(variables: Mapping[str, Any], inventory: InventoryView,
                           sites: Sequence[Site]) -> None:
    acme = [site.name for site in sites if site.certificate == "acme"]
    peer = inventory.host(variables.get("host_name", ""))
    if acme and peer is not None and "certbot" not in peer.roles:
        raise RoleError(f"nginx_sites: {', '.join(acme)} use certificate: acme, but host "
                        f"{peer.name}'s roles ({', '.join(peer.roles)}) have no certbot, which "
                        "issues them: add certbot after nginx to its roles, or give those sites "
                        "certificate: self-signed or files.")


def check_app_upstreams(variables: Mapping[str, Any], inventory: InventoryView) -> None:
    """An upstream whose servers come from an app needs that app on this host, before nginx:
    the app role writes the server list nginx's configuration includes."""
    peer = inventory.host(variables.get("host_name", ""))
    if peer is None:
        return
    roles = list(peer.roles)
    before = roles[:roles.index("nginx")] if "nginx" in roles else roles
    for upstream in read_upstreams(variables):
        if not upstream.app or ("app" in before and variables.get("app_name") == upstream.app):
            continue
        has = "no app role before nginx" if "app" not in before else \
            f"app_name {variables.get('app_name')!r}"
        raise RoleError(f"nginx_upstreams: upstream {upstream.name!r} takes its servers from "
                        f"app {upstream.app!r}, but host {peer.name} has {has}: give the host "
                        "the app role (before nginx) with that app_name, or list the "
                        "upstream's servers.")


def _opens(rule: Any, port: int) -> bool:
    return isinstance(rule, Mapping) and str(rule.get("port")) == str(port) and \
        rule.get("proto", "tcp") in ("tcp", "any") and \
        rule.get("action", "allow") in ("allow", "limit")
