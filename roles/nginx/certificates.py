"""The certificates this role makes on the host: self-signed ones. The inventory's files are
written by the configuration's set, acme ones by the certbot role; nginx serves them once
they exist.

A self-signed certificate is for hosts without public DNS (an internal tier, the sandbox): ECDSA
P-256, valid for ``nginx_self_signed_days`` (at most 366, Mozilla's longest lifespan), its
subjectAltName the site's server names. The probe reads the names and whether it expires within
``nginx_self_signed_renew_days``; it is made again when either says so, the key 0600 root
(written under umask 077, renamed into place after the certificate was made).
"""

from __future__ import annotations

from collections.abc import Sequence

from provisioner.commands import quote
from provisioner.host import Host
from provisioner.step import Plan, Probed, Step
from roles.nginx.sites import Site, certificate_paths

MISSING = "missing"


def probe_self_signed(site: Site, renew_seconds: int) -> str:
    chain, key = (quote(path) for path in certificate_paths(site))
    return (f"if [ -s {chain} ] && [ -s {key} ]; then stat -c 'key %a %U:%G' {key}; "
            f"openssl x509 -in {chain} -noout -ext subjectAltName -checkend {renew_seconds} "
            f"2>&1; else echo {MISSING}; fi\n")


def certificate_names(output: str) -> tuple[str, ...]:
    """The DNS names of ``openssl x509 -ext subjectAltName``'s answer, in order."""
    lines = output.splitlines()
    for index, line in enumerate(lines):
        if "Subject Alternative Name" in line and index + 1 < len(lines):
            return tuple(item.strip().removeprefix("DNS:")
                         for item in lines[index + 1].split(","))
    return ()


def plan_self_signed(site: Site, output: str, action: str) -> Plan:
    """Pure: make it when missing, when its names are not the site's, when it nears expiry,
    or when its key is not 0600 root."""
    if output.strip() == MISSING:
        return Plan(f"self-signed certificate for {site.name} missing", action)
    names = certificate_names(output)
    if sorted(names) != sorted(site.server_names):
        return Plan(f"self-signed certificate for {site.name} names {', '.join(names) or 'none'},"
                    f" not {', '.join(site.server_names)}", action)
    if "Certificate will expire" in output:
        return Plan(f"self-signed certificate for {site.name} expires soon", action)
    if "key 600 root:root" not in output:
        return Plan(f"self-signed certificate for {site.name}: its key is not 0600 root", action)
    return Plan(f"self-signed certificate for {site.name} names {', '.join(names)}, not "
                "expiring soon")


def self_signed_action(site: Site, days: int) -> str:
    chain, key = certificate_paths(site)
    directory = quote(chain.rsplit("/", 1)[0])
    names = ",".join(f"DNS:{name}" for name in site.server_names)
    return (f"set -e\nmkdir -p -m 0755 {directory}\nchmod 0755 {directory}\n"
            f"new=$(mktemp -d {directory}/.new-XXXXXX)\ntrap 'rm -rf -- \"$new\"' EXIT\n"
            "(umask 077 && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 "
            f"-nodes -days {days} -subj {quote('/CN=' + site.server_names[0])} "
            f"-addext {quote('subjectAltName=' + names)} "
            "-addext basicConstraints=critical,CA:FALSE "
            "-addext keyUsage=critical,digitalSignature "
            "-addext extendedKeyUsage=serverAuth "
            "-keyout \"$new/privkey.pem\" -out \"$new/fullchain.pem\" 2>&1)\n"
            "chown root:root \"$new/privkey.pem\" \"$new/fullchain.pem\"\n"
            "chmod 0600 \"$new/privkey.pem\"\nchmod 0644 \"$new/fullchain.pem\"\n"
            f"mv -fT -- \"$new/privkey.pem\" {quote(key)}\n"
            f"mv -fT -- \"$new/fullchain.pem\" {quote(chain)}\n")


def ensure_self_signed(host: Host, site: Site, notify: Sequence[str]) -> Step:
    days = int(host.vars["nginx_self_signed_days"])
    renew = int(host.vars["nginx_self_signed_renew_days"]) * 86400
    action = self_signed_action(site, days)

    def decide(probed: Probed) -> Plan:
        return plan_self_signed(site, probed.output, action)

    return Step(f"self-signed certificate for site {site.name}", probe_self_signed(site, renew),
                decide, tuple(notify))


def certificate_steps(host: Host, sites: Sequence[Site], notify: Sequence[str]) -> list[Step]:
    """The steps that make each self-signed site's certificate (a ``files`` site's are in the
    configuration's set: configuration.certificate_files)."""
    steps = []
    for site in sites:
        if site.certificate == "self-signed":
            steps.append(ensure_self_signed(host, site, notify))
    return steps
