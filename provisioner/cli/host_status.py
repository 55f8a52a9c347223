"""What only the host knows, for its report: deploy history, backups, certificates; one round trip.

Each part is asked only of a host whose roles have it, by the same means as the commands that
show it alone (``deploy.history``, ``backup.list``, ``certs.status``), and all of them travel
in one read-only script, each part under a marker of its own. A host with none of them is not
contacted at all. What the host says is masked with the inventory's secrets before it is read.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from provisioner.cli.backup import PROGRAM, has_backups
from provisioner.cli.certs import (
    CertificateStatus,
    HostStatus,
    SiteCertificate,
    has_sites,
    parse_status,
    renewal_due,
    site_certificates,
)
from provisioner.cli.certs import status_script as certificates_script
from provisioner.cli.deploy import release_of
from provisioner.commands import quote
from provisioner.deploy import history
from provisioner.deploy.rollout import history_path
from provisioner.errors import ProvisionerError
from provisioner.host import secrets_in
from provisioner.report.provision_record import timestamp
from provisioner.run.session import HostJob, host_session
from provisioner.secrets.redaction import redact

#: Deploy history entries shown per host, newest first.
HISTORY_ENTRIES = 10
#: Seconds the status script may take (openssl per site, the backup program twice).
TIMEOUT = 120
MARKER = "@@provisioner-report {}@@"
MARKER_LINE = re.compile(r"@@provisioner-report (.+)@@")
ARCHIVE = re.compile(r"^(\d{8}T\d{6}Z)(-ondemand)?/")
LAST_RUN = re.compile(r"last (backup|verify): result=(\S*) time=(\S*) archive=(\S*) "
                      r"reason=(.*)")


@dataclass(frozen=True)
class StatusPlan:
    """What to ask one host: the parts its roles have."""

    job: HostJob
    application: str = ""
    history_file: str = ""
    backups: bool = False
    sites: tuple[SiteCertificate, ...] = ()


def status_plan(job: HostJob, inventory: str) -> StatusPlan:
    release = release_of(job)
    sites = tuple(site_certificates(job, inventory)) if has_sites(job) else ()
    return StatusPlan(job, release.name if release else "",
                      history_path(release) if release else "", has_backups(job), sites)


def status_script(plan: StatusPlan) -> str:
    """The read-only script, "" when the host has none of the parts."""
    parts = []
    if plan.history_file:
        parts += [_mark("deploy-history"), history.read(plan.history_file, HISTORY_ENTRIES)]
    if plan.backups:
        program = quote(PROGRAM)
        parts += [_mark("backup"), f"if [ -x {program} ]; then {program} list 2>/dev/null; "
                  f"echo {quote(_marker('backup-status'))}; {program} status 2>/dev/null; "
                  "else echo 'not installed'; fi"]
    if plan.sites:
        parts += [_mark("certificates"), certificates_script(plan.sites)]
    return "\n".join(parts) + "\n" if parts else ""


def _marker(name: str) -> str:
    return MARKER.format(name)


def _mark(name: str) -> str:
    return f"echo {quote(_marker(name))}"


def read_host_status(plan: StatusPlan, now: datetime | None = None) -> dict[str, Any]:
    """The host's live status; ``read`` False (and why) when it could not be reached."""
    moment = now or datetime.now(UTC)
    # A host with nothing to read is still asked (``true``): its page must not say "read" of a
    # host that is down, and the command's exit code must say it could not be reached.
    script = status_script(plan) or "true"
    try:
        with host_session(plan.job, check=True) as session:
            output = session.run_script(script, timeout=TIMEOUT).stdout
            round_trips = session.round_trips
    except ProvisionerError as error:
        return not_read(f"host unreachable: {error}")
    output = redact(output, secrets_in(plan.job.variables))
    return {"read": True, "read_at": timestamp(moment), "round_trips": round_trips,
            **parse_status_output(output, plan, moment)}


def not_read(reason: str) -> dict[str, Any]:
    """The live status of a host that was not asked, and why."""
    return {"read": False, "reason": reason, "deploy_history": None, "backup": None,
            "certificates": None}


def parse_status_output(output: str, plan: StatusPlan, now: datetime) -> dict[str, Any]:
    """status_script's output -> the report's parts (None for a part the host lacks); pure."""
    sections = _sections(output)
    return {
        "deploy_history": (parse_history(sections.get("deploy-history", ""), plan.application)
                           if plan.history_file else None),
        "backup": (parse_backups(sections.get("backup", ""),
                                 sections.get("backup-status", ""), now)
                   if plan.backups else None),
        "certificates": (certificate_rows(parse_status(sections.get("certificates", ""),
                                                       plan.sites), now)
                         if plan.sites else None),
    }


def _sections(output: str) -> dict[str, str]:
    sections: dict[str, list[str]] = {}
    current: list[str] = []
    for line in output.splitlines():
        found = MARKER_LINE.fullmatch(line)
        if found:
            current = sections.setdefault(found.group(1), [])
        else:
            current.append(line)
    return {name: "\n".join(lines) + "\n" for name, lines in sections.items()}


def parse_history(output: str, application: str) -> dict[str, Any]:
    entries, damaged = history.read_entries(output)
    return {"application": application, "damaged_lines": damaged,
            "entries": [asdict(entry) for entry in reversed(entries)]}


def parse_backups(archives: str, status: str, now: datetime) -> dict[str, Any]:
    """The archives' list and the last runs' records -> latest archive, its age, the last
    backup and restore test (None when never run)."""
    if archives.strip() == "not installed":
        return {"installed": False, "archives": 0, "latest_archive": None,
                "latest_age_hours": None, "last_backup": None, "last_restore_test": None}
    names = list(dict.fromkeys(found.group(0).rstrip("/") for line in archives.splitlines()
                               if (found := ARCHIVE.match(line))))
    last: dict[str, dict[str, str]] = {}
    for line in status.splitlines():
        found = LAST_RUN.fullmatch(line.strip())
        if found:
            kind, result, time, archive, reason = found.groups()
            last[kind] = {"result": result, "time": time, "archive": archive,
                          "reason": reason.strip()}
    latest = names[0] if names else None
    return {"installed": True, "archives": len(names), "latest_archive": latest,
            "latest_age_hours": archive_age_hours(latest, now) if latest else None,
            "last_backup": last.get("backup"), "last_restore_test": last.get("verify")}


def archive_age_hours(name: str, now: datetime) -> float:
    made = datetime.strptime(name[:16], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    return round((now - made).total_seconds() / 3600, 1)


def certificate_rows(state: HostStatus, now: datetime) -> list[dict[str, Any]]:
    return [certificate_row(certificate, state, now) for certificate in state.certificates]


def certificate_row(certificate: CertificateStatus, state: HostStatus, now: datetime
                    ) -> dict[str, Any]:
    site, end = certificate.site, certificate.not_after
    due = renewal_due(certificate, state.certbot_version) if site.source == "acme" else None
    return {"site": site.name, "source": site.source, "path": site.path,
            "present": end is not None, "names": list(certificate.names),
            "issuer": certificate.issuer, "not_after": timestamp(end) if end else None,
            "days_left": (end - now).days if end else None,
            "renewal_due": timestamp(due[0]) if due else None,
            "renewal_rule": due[1] if due else None,
            "renewal_timer_next": (state.timer_next or None) if site.source == "acme" else None}


def read_every_status(plans: Sequence[StatusPlan], workers: int = 10
                      ) -> dict[str, dict[str, Any]]:
    """Each host's live status, at most ``workers`` hosts asked at once."""
    from concurrent.futures import ThreadPoolExecutor

    if not plans:
        return {}
    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(plans)))) as pool:
        found = list(pool.map(read_host_status, plans))
    return {plan.job.config.name: status for plan, status in zip(plans, found, strict=True)}
