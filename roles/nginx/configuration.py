"""The whole nginx configuration as one config-set step, its TLS blocks decided on the host.

nginx.conf, every site's file and its headers snippet are one set (ops/config_set.py): staged
beside /etc/nginx, checked with ``nginx -t`` over the whole staged tree in a private mount
namespace, swapped only when nginx accepts it, so a failing configuration never goes live and
the run fails with nginx's own words. sites-enabled and headers.d are the set's managed
directories: Debian's default vhost (and any site no longer in the inventory) goes.

What the files say depends on the host (its nginx and OpenSSL versions, which certificates
exist, their OCSP URLs): the step's probe reads that (tls.py) in front of the config set's own
probe, and ``decide`` renders the files from it. The certbot role yields this same step again
after it issued a certificate: probed again, it now finds the files and adds the TLS block, in
the same run; converged, both yield no change.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

from provisioner.host import Host
from provisioner.ops.config_set import (
    ConfigFile,
    ConfigSet,
    build_config_set,
    parse_config_set,
    plan_config_set,
    probe_config_set,
)
from provisioner.step import Plan, Probed, ProbeUnreadable, Step
from roles.nginx.sites import ACME_WEBROOT, Site, certificate_paths, read_sites
from roles.nginx.tls import CIPHERS, HostTls, parse_host_tls, probe_host_tls
from roles.nginx.upstreams import read_rate_limits, read_upstreams

ROOT = "/etc/nginx"
NGINX_CONF = f"{ROOT}/nginx.conf"
SITES = f"{ROOT}/sites-enabled"
HEADERS = f"{ROOT}/headers.d"
CHECK = "nginx -t -q"
TEMPLATE_ARGUMENTS = {
    "etc/nginx/nginx.conf.j2": {"tls", "ciphers", "upstreams", "rate_limits"},
    "etc/nginx/sites-enabled/site.conf.j2": {"site", "tls", "certificate", "key",
                                             "acme_webroot"},
    "etc/nginx/headers.d/site.conf.j2": {"site", "hsts", "csp"},
}


def site_path(site: Site) -> str:
    return f"{SITES}/{site.name}.conf"


def headers_path(site: Site) -> str:
    return f"{HEADERS}/{site.name}.conf"


def rendered_files(host: Host, tls: HostTls) -> dict[str, str | ConfigFile]:
    """Every file of the set, rendered for this host's nginx, OpenSSL and certificates; a
    ``files`` site's certificate and key are in the set too (its TLS block with them)."""
    variables = host.vars
    tls = with_given_certificates(tls, read_sites(variables))
    files: dict[str, str | ConfigFile] = {
        NGINX_CONF: host.render("etc/nginx/nginx.conf.j2", tls=tls, ciphers=CIPHERS,
                                upstreams=read_upstreams(variables),
                                rate_limits=read_rate_limits(variables))}
    for site in read_sites(variables):
        certificate, key = certificate_paths(site)
        files[site_path(site)] = host.render("etc/nginx/sites-enabled/site.conf.j2", site=site,
                                             tls=tls, certificate=certificate, key=key,
                                             acme_webroot=ACME_WEBROOT)
        files[headers_path(site)] = host.render("etc/nginx/headers.d/site.conf.j2", site=site,
                                                hsts=hsts_value(variables),
                                                csp=site.content_security_policy or
                                                variables["nginx_content_security_policy"])
        files.update(certificate_files(site))
    return files


def certificate_files(site: Site) -> dict[str, str | ConfigFile]:
    """A ``files`` site's certificate (0644) and key (0600), in the set so that ``nginx -t``
    checks them with the configuration (a key that does not match never goes live)."""
    if site.certificate != "files" or site.certificate_files is None:
        return {}
    chain, key = certificate_paths(site)
    given_chain, given_key = site.certificate_files
    return {chain: ConfigFile(given_chain.rstrip("\n") + "\n"),
            key: ConfigFile(given_key.rstrip("\n") + "\n", mode=0o600)}


def with_given_certificates(tls: HostTls, sites: Sequence[Site]) -> HostTls:
    """The host's certificates plus every ``files`` site's, which the set itself writes (its
    OCSP URL as the live copy's, '' before there is one)."""
    given = {site.name: tls.certificates.get(site.name, "") for site in sites
             if site.certificate == "files"}
    return replace(tls, certificates={**tls.certificates, **given})


def hsts_value(variables: Mapping[str, object]) -> str:
    value = f"max-age={variables['nginx_hsts_max_age']}"
    return value + "; includeSubDomains" if variables["nginx_hsts_include_subdomains"] else value


def _paths_only(sites: Sequence[Site]) -> ConfigSet:
    """The set's shape without its contents: what the probe reads does not depend on them."""
    files: dict[str, str | ConfigFile] = {NGINX_CONF: ""}
    for site in sites:
        files[site_path(site)] = ""
        files[headers_path(site)] = ""
        files.update(certificate_files(site))
    return build_config_set(ROOT, files, CHECK, (SITES, HEADERS))


def nginx_configuration(host: Host, notify: Sequence[str] = ("nginx:reload",),
                        label: str = "") -> Step:
    """The ONE config-set step of the nginx configuration (see the module docstring)."""
    sites = read_sites(host.vars)
    shape = _paths_only(sites)
    show_diff = host.show_diff

    def decide(probed: Probed) -> Plan:
        if probed.exit_code != 0:
            raise ProbeUnreadable(f"the probe of the nginx configuration failed "
                                  f"(exit {probed.exit_code})")
        probed_tls, rest = parse_host_tls(probed.output)
        tls = with_given_certificates(probed_tls, sites)
        config = build_config_set(ROOT, rendered_files(host, tls), CHECK, (SITES, HEADERS))
        plan = plan_config_set(config, parse_config_set(rest, config), show_diff)
        served = [site.name for site in sites if tls.has_certificate(site)]
        return replace(plan, reason=f"{plan.reason} (TLS for "
                                    f"{', '.join(served) or 'no site yet'})")

    probe = probe_host_tls(sites) + probe_config_set(shape, with_content=show_diff)
    return Step(label or f"nginx configuration {ROOT} (nginx -t on the staged tree) "
                "[controls §8]", probe, decide, tuple(notify), None, host.secrets)
