"""What ``invoke certs.status`` does: each TLS certificate a host serves, read on the host.

For every site of the host's ``nginx_sites`` (acme, self-signed and files alike) the host's
openssl reads the certificate nginx serves: its names, issuer, not-after; for acme sites this
adds when certbot will renew it (certbot 2.x: 30 days before expiry; 4.x: when a third of the
lifetime remains, half for lifetimes of 10 days or less; ``renew_before_expiry`` in the
lineage's renewal conf overrides both) and when the renewal timer runs next. One round trip
per host, as root, changing nothing.

The engine knows no role by name: the role whose defaults declare ``nginx_sites`` is the one
whose ``sites.py`` says what a site is and where its certificate lives, so this loads that
module from the role's own directory and does not keep a copy of its rules.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import ModuleType

from provisioner.cli import select_jobs
from provisioner.commands import quote
from provisioner.content.roles import Role
from provisioner.errors import ProvisionerError
from provisioner.inventory.hosts import Inventory
from provisioner.run.engine import RunOptions
from provisioner.run.session import HostJob, host_session
from provisioner.secrets.values import reveal_all

#: The variable of the role that defines sites, and its module that reads them.
SITES_VARIABLE = "nginx_sites"
SITES_MODULE = "sites.py"
RENEWAL = "/etc/letsencrypt/renewal"
TIMER = "certbot.timer"

Show = Callable[[str, bool], None]


@dataclass(frozen=True)
class SiteCertificate:
    """One site's certificate as the cli asks the host about it."""

    name: str
    source: str
    path: str


@dataclass(frozen=True)
class CertificateStatus:
    """What the host said about one site's certificate."""

    site: SiteCertificate
    names: tuple[str, ...] = ()
    issuer: str = ""
    not_before: datetime | None = None
    not_after: datetime | None = None
    renew_before: str = ""


@dataclass(frozen=True)
class HostStatus:
    certificates: tuple[CertificateStatus, ...]
    certbot_version: tuple[int, ...] = ()
    timer_next: str = ""


def print_output(text: str, error: bool) -> None:
    print(text, file=sys.stderr if error else sys.stdout, flush=True)


def status(inventory: Inventory, hosts: str, group: str, show: Show = print_output,
           now: datetime | None = None) -> int:
    """``certs.status``: 0 when every chosen host answered with every certificate, 1 when a
    host could not be reached or a certificate is not there yet; ProvisionerError (exit 2)
    for a host the inventory lacks or one without sites."""
    wanted = certificate_jobs(inventory, hosts, group)
    codes = [_status_of(job, sites, show, now or datetime.now(UTC)) for job, sites in wanted]
    return max(codes, default=0)


def certificate_jobs(inventory: Inventory, hosts: str, group: str
                     ) -> list[tuple[HostJob, list[SiteCertificate]]]:
    """The chosen hosts with their sites (every host with sites when none is chosen); a chosen
    host without sites is a mistake, said before any contact."""
    jobs = select_jobs(inventory, hosts, group, RunOptions())
    if hosts or group:
        return [(job, site_certificates(job, str(inventory.path))) for job in jobs]
    with_sites = [(job, site_certificates(job, str(inventory.path))) for job in jobs
                  if has_sites(job)]
    if not with_sites:
        raise ProvisionerError(f"no host of {inventory.path} has {SITES_VARIABLE}; give a web "
                               "host sites and provision it first.")
    return with_sites


def has_sites(job: HostJob) -> bool:
    return any(SITES_VARIABLE in role.defaults for role in job.roles) and \
        bool(job.variables.get(SITES_VARIABLE))


def site_certificates(job: HostJob, inventory: str) -> list[SiteCertificate]:
    """The host's sites and their certificate paths, read by the sites role's own module."""
    role = next((role for role in job.roles if SITES_VARIABLE in role.defaults), None)
    variables = reveal_all(job.variables)
    if role is None or not variables.get(SITES_VARIABLE):
        raise ProvisionerError(f"host {job.config.name} of {inventory} has no {SITES_VARIABLE}:"
                               " there is no certificate to show; give it sites (certificate "
                               "acme, self-signed or files) and provision it first.")
    module = sites_module(role)
    return [SiteCertificate(site.name, site.certificate, module.certificate_paths(site)[0])
            for site in module.read_sites(variables)]


def sites_module(role: Role) -> ModuleType:
    path = role.path / SITES_MODULE
    spec = importlib.util.spec_from_file_location(f"provisioner_role_{role.name}_sites", path)
    if spec is None or spec.loader is None:
        raise ProvisionerError(f"role {role.name} declares {SITES_VARIABLE} but has no {path}.")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def status_script(sites: Sequence[SiteCertificate]) -> str:
    """Read-only shell: per site its certificate's fields, then certbot's version and timer."""
    lines = []
    for site in sites:
        cert, conf = quote(site.path), quote(f"{RENEWAL}/{site.name}.conf")
        lines.append(f"echo {quote(f'== site {site.name}')}")
        lines.append(f"if [ -f {cert} ]; then openssl x509 -in {cert} -noout -issuer "
                     f"-startdate -enddate -ext subjectAltName 2>&1; else echo missing; fi")
        if site.source == "acme":
            lines.append(f"grep -E '^renew_before_expiry *=' {conf} 2>/dev/null || true")
    lines.append("echo '== version'; certbot --version 2>&1 || true")
    lines.append(f"echo '== timer'; systemctl show {TIMER} -p NextElapseUSecRealtime --value "
                 "2>/dev/null || true")
    return "\n".join(lines) + "\n"


def parse_status(output: str, sites: Sequence[SiteCertificate]) -> HostStatus:
    """status_script's output -> HostStatus; pure."""
    sections = _sections(output)
    certificates = tuple(_certificate(site, sections.get(f"site {site.name}", []))
                         for site in sites)
    version = next((tuple(int(part) for part in match.groups())
                    for line in sections.get("version", [])
                    if (match := re.match(r"^certbot (\d+)\.(\d+)\.(\d+)", line))), ())
    timer = next((line.strip() for line in sections.get("timer", []) if line.strip()), "")
    return HostStatus(certificates, version, timer)


def _sections(output: str) -> dict[str, list[str]]:
    sections: dict[str, list[str]] = {}
    current: list[str] = []
    for line in output.splitlines():
        if line.startswith("== "):
            current = sections.setdefault(line[3:].strip(), [])
        else:
            current.append(line)
    return sections


def _certificate(site: SiteCertificate, lines: Sequence[str]) -> CertificateStatus:
    fields: dict[str, str] = {}
    names: list[str] = []
    for line in lines:
        key, _, value = line.partition("=")
        if key in ("issuer", "notBefore", "notAfter"):
            fields[key] = value.strip()
        elif key.startswith("renew_before_expiry"):
            fields["renew"] = value.strip()
        elif "DNS:" in line or "IP Address:" in line:
            names += [part.strip().split(":", 1)[1] for part in line.split(",")
                      if ":" in part]
    return CertificateStatus(site, tuple(names), fields.get("issuer", ""),
                             _date(fields.get("notBefore")), _date(fields.get("notAfter")),
                             fields.get("renew", ""))


def _date(text: str | None) -> datetime | None:
    if not text:
        return None
    return datetime.strptime(text, "%b %d %H:%M:%S %Y %Z").replace(tzinfo=UTC)


def renewal_due(certificate: CertificateStatus, version: tuple[int, ...]
                ) -> tuple[datetime, str] | None:
    """When certbot renews this certificate, and by which rule; None without dates."""
    start, end = certificate.not_before, certificate.not_after
    if start is None or end is None:
        return None
    before = _interval(certificate.renew_before)
    if before is not None:
        return end - before, f"renew_before_expiry = {certificate.renew_before}"
    if version and version[0] >= 4:
        lifetime = end - start
        share = 2 if lifetime <= timedelta(days=10) else 3
        return end - lifetime / share, f"certbot {_dotted(version)}: 1/{share} of the lifetime left"
    return end - timedelta(days=30), f"certbot {_dotted(version) or '2.x'}: 30 days before expiry"


def _interval(text: str) -> timedelta | None:
    """certbot's renew_before_expiry ("30 days", "2 weeks", "12 hours"); None if unreadable."""
    match = re.fullmatch(r"^(\d+)\s*(second|minute|hour|day|week)s?$", text.strip())
    if not match:
        return None
    return timedelta(**{f"{match.group(2)}s": int(match.group(1))})


def _dotted(version: tuple[int, ...]) -> str:
    return ".".join(map(str, version))


def describe(host: str, state: HostStatus, now: datetime) -> tuple[list[str], bool]:
    """The lines shown for one host, and whether every certificate was there."""
    lines, complete = [f"== {host}"], True
    for cert in state.certificates:
        site = cert.site
        if cert.not_after is None:
            complete = False
            lines.append(f"{site.name} ({site.source}): no certificate at {site.path} yet; "
                         "provision the host (invoke provision --host ...) first.")
            continue
        left = (cert.not_after - now).days
        lines += [f"{site.name} ({site.source}): {', '.join(cert.names) or '(no names)'}",
                  f"  issuer: {cert.issuer}",
                  f"  not after: {cert.not_after:%Y-%m-%d %H:%M} UTC ({left} days left)"]
        due = renewal_due(cert, state.certbot_version) if site.source == "acme" else None
        if due is not None:
            lines.append(f"  next renewal: {due[0]:%Y-%m-%d %H:%M} UTC ({due[1]}); "
                         f"{TIMER} next runs {state.timer_next or 'never (not active)'}")
    return lines, complete


def _status_of(job: HostJob, sites: Sequence[SiteCertificate], show: Show,
               now: datetime) -> int:
    try:
        with host_session(job, check=True) as session:
            result = session.run_script(status_script(sites))
    except ProvisionerError as error:
        show(f"{job.config.name}: {error}", True)
        return 1
    lines, complete = describe(job.config.name, parse_status(result.stdout, sites), now)
    show("\n".join(lines), False)
    return 0 if complete else 1


