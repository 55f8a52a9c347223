"""What ``invoke audit`` does: Lynis on each chosen host, its hardening index and top findings.

Per host, one session: a walk of one step, Debian's ``lynis`` installed through ops/apt (the
same probe, dpkg-lock wait and list refresh the roles' packages get, so a host that has it
costs no apt run), then one round trip that runs ``lynis audit system --quick --no-colors`` as
root under ``timeout`` and prints the report's lines this reads (``/var/log/lynis-report.dat``:
``hardening_index=``, ``lynis_version=``, ``lynis_tests_done=``, ``warning[]=`` and
``suggestion[]=``, the last two ``ID|text|details|solution|``). A host that has Lynis costs
two round trips, the first audit three; a Lynis run takes 30-60 s on a sandbox machine, and
hosts are audited in parallel.

Each host's result is kept on this machine (provisioner/records.py, kind ``audit``) for the
host report. An unknown host is exit 2 before any contact; a host that cannot be reached, or
whose Lynis fails, is exit 1 and the others are still audited; so is a host scoring below
``--min-index``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

from provisioner.change import Change
from provisioner.cli import select_jobs
from provisioner.content.roles import Role
from provisioner.errors import ProvisionerError
from provisioner.host import Host
from provisioner.inventory.hosts import Inventory
from provisioner.ops.apt import ensure_packages
from provisioner.output.console import ConsoleReport, plain_table
from provisioner.records import save_record
from provisioner.run.engine import RunOptions
from provisioner.run.session import HostJob, host_session
from provisioner.step import Step
from provisioner.transport.kept_logins import prepare_keepers

REPORT_FILE = "/var/log/lynis-report.dat"
#: Seconds Lynis may run before it is stopped (a quick audit takes about a minute).
LYNIS_TIMEOUT = 900
#: Findings shown per host (warnings first); the record keeps them all.
SHOWN_FINDINGS = 10
AUDIT_LABEL = "lynis audit system --quick"
_REPORT_KEYS = ("hardening_index", "lynis_version", "lynis_tests_done", "warning[]",
                "suggestion[]")

Show = Callable[[str], None]


@dataclass(frozen=True)
class Finding:
    """One warning or suggestion of the report: its test id and what it says."""

    id: str
    text: str


@dataclass(frozen=True)
class AuditReport:
    """What one Lynis run found, as its report file says it."""

    hardening_index: int
    lynis_version: str
    tests_performed: int
    warnings: tuple[Finding, ...] = ()
    suggestions: tuple[Finding, ...] = ()


@dataclass
class HostAudit:
    """One host's audit: the report, or why there is none."""

    name: str
    report: AuditReport | None = None
    error: str = ""
    seconds: float = 0.0
    changes: list[Change] = field(default_factory=list)


def parse_report(text: str) -> AuditReport:
    """lynis-report.dat's lines -> AuditReport; pure. A report without its index (Lynis
    stopped before the end) raises ValueError."""
    values: dict[str, str] = {}
    findings: dict[str, list[Finding]] = {"warning[]": [], "suggestion[]": []}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if not sep:
            continue
        if key in findings:
            findings[key].append(parse_finding(value))
        elif key in _REPORT_KEYS:
            values[key] = value.strip()
    if not values.get("hardening_index", "").isdigit():
        raise ValueError("the report has no hardening_index line: Lynis did not finish")
    tests = values.get("lynis_tests_done", "")
    return AuditReport(int(values["hardening_index"]), values.get("lynis_version", ""),
                       int(tests) if tests.isdigit() else 0,
                       tuple(findings["warning[]"]), tuple(findings["suggestion[]"]))


def parse_finding(value: str) -> Finding:
    """``ID|text|details|solution|`` -> Finding; details other than "-" join the text."""
    test, _, rest = value.partition("|")
    parts = rest.split("|")
    text = parts[0].strip()
    details = parts[1].strip() if len(parts) > 1 else ""
    if details and details != "-":
        text = f"{text} ({details})"
    return Finding(test.strip(), text)


def audit_script(timeout: int = LYNIS_TIMEOUT) -> str:
    """Shell run as root: Lynis, quietly, then its exit code and the report's lines of interest
    (or the last lines it said when it failed). The old report goes first, so a run that dies
    can never be read as this one's."""
    keys = "|".join(re.escape(key) for key in _REPORT_KEYS)
    return (f"rm -f {REPORT_FILE}\n"
            f"said=$(timeout {timeout} lynis audit system --quick --no-colors "
            "</dev/null 2>&1 >/dev/null); code=$?\n"
            "echo \"== exit $code\"\n"
            "if [ \"$code\" -ne 0 ]; then printf '%s\\n' \"$said\" | tail -n 10; fi\n"
            f"echo '== report'; grep -E '^({keys})=' {REPORT_FILE} 2>/dev/null || true\n")


def parse_audit_output(output: str, timeout: int = LYNIS_TIMEOUT) -> AuditReport:
    """audit_script's output -> AuditReport; ProvisionerError with Lynis's words when it
    failed or timed out."""
    head, _, report = output.partition("== report\n")
    first, _, said = head.partition("\n")
    number = first.removeprefix("== exit ").strip()
    code = int(number) if first.startswith("== exit ") and number.isdigit() else -1
    said = said.strip() if code != -1 else head.strip()
    if code == 124:
        raise ProvisionerError(f"Lynis did not finish within {timeout} s and was stopped.")
    try:
        return parse_report(report)
    except ValueError:
        raise ProvisionerError(f"lynis audit system failed (exit {code}): "
                               f"{said or 'it said nothing'}") from None


def top_findings(report: AuditReport, count: int = SHOWN_FINDINGS
                 ) -> list[tuple[str, Finding]]:
    """Warnings first, then suggestions, at most ``count``."""
    kinds = [("warning", finding) for finding in report.warnings]
    kinds += [("suggestion", finding) for finding in report.suggestions]
    return kinds[:count]


def record_data(report: AuditReport, ran_at: datetime) -> dict[str, Any]:
    """The ``audit`` record, in the keys the host report reads."""
    return {"hardening_index": report.hardening_index, "lynis_version": report.lynis_version,
            "ran_at": ran_at.astimezone(UTC).isoformat(timespec="seconds"),
            "tests_performed": report.tests_performed,
            "warnings": [{"id": item.id, "text": item.text} for item in report.warnings],
            "suggestions": [{"id": item.id, "text": item.text}
                            for item in report.suggestions]}


def describe(audit: HostAudit, min_index: int = 0) -> list[str]:
    """The lines shown for one audited host."""
    report = audit.report
    if report is None:
        return [f"== {audit.name}: no audit ({audit.error})"]
    below = f", below --min-index {min_index}" if report.hardening_index < min_index else ""
    lines = [f"== {audit.name}: hardening index {report.hardening_index}{below} (Lynis "
             f"{report.lynis_version}, {report.tests_performed} tests, "
             f"{_count(report.warnings, 'warning')}, "
             f"{_count(report.suggestions, 'suggestion')}, "
             f"{audit.seconds:.0f} s)"]
    lines += [f"  {kind:<10} {finding.id:<10} {finding.text}"
              for kind, finding in top_findings(report)]
    left = len(report.warnings) + len(report.suggestions) - SHOWN_FINDINGS
    if left > 0:
        lines.append(f"  ... and {left} more (all kept in the record and in {REPORT_FILE} on "
                     "the host)")
    return lines


def _count(items: Sequence[object], noun: str) -> str:
    return f"{len(items)} {noun}{'' if len(items) == 1 else 's'}"


def summary_rows(audits: Iterable[HostAudit]) -> list[tuple[str, ...]]:
    return [(audit.name, str(audit.report.hardening_index) if audit.report else "-",
             str(len(audit.report.warnings)) if audit.report else "-",
             str(len(audit.report.suggestions)) if audit.report else "-",
             f"{audit.seconds:.1f}") for audit in audits]


def exit_code(audits: Sequence[HostAudit], min_index: int) -> int:
    """1 when a host has no audit or scored below ``min_index``, else 0."""
    return 1 if any(audit.report is None or audit.report.hardening_index < min_index
                    for audit in audits) else 0


def check_min_index(min_index: int) -> None:
    if not 0 <= min_index <= 100:
        raise ProvisionerError(f"--min-index {min_index}: the hardening index runs from 0 to "
                               "100; give a number in between, e.g. --min-index 85.")


def audit(inventory: Inventory, hosts: str, group: str, min_index: int = 0,
          parallel: int = 10, show: Show = print) -> int:
    """``invoke audit``: Lynis on each chosen host, its index and findings shown and kept."""
    check_min_index(min_index)
    jobs = [audit_job(job) for job in select_jobs(inventory, hosts, group, RunOptions())]
    console = ConsoleReport()
    prepare_keepers([job.config for job in jobs], max(1, min(parallel, len(jobs))))
    audits = in_parallel_audits(jobs, partial(audit_host, console=console), parallel)
    console.close()
    for result in audits:
        show("\n".join(describe(result, min_index)))
        if result.report is not None:
            save_record(inventory.path, result.name, "audit",
                        record_data(result.report, datetime.now(UTC)))
    show(plain_table("audit", ("host", "index", "warnings", "suggestions", "seconds"),
                     summary_rows(audits)).rstrip("\n"))
    return exit_code(audits, min_index)


def in_parallel_audits(jobs: Sequence[HostJob], work: Callable[[HostJob], HostAudit],
                       parallel: int) -> list[HostAudit]:
    """Every host's audit, at most ``parallel`` at once, in the jobs' order."""
    workers = max(1, min(parallel, len(jobs)))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(work, jobs))


def lynis_steps(host: Host) -> list[Step]:
    return [ensure_packages(host, ["lynis"], label="packages lynis (for invoke audit)")]


#: Stands for the audit in the walk: one step, Lynis installed (the engine knows no role by
#: name, and the audit is none of the inventory's roles).
AUDIT = Role(name="audit", path=Path(__file__).resolve().parent, defaults={}, handlers={},
             steps=lynis_steps)


def audit_job(job: HostJob) -> HostJob:
    """The host's login without its roles or variables: the audit installs Lynis only (no
    host secret is generated, no role's step runs)."""
    return HostJob(replace(job.config, vars={}), (AUDIT,), {}, job.inventory)


def audit_host(job: HostJob, console: ConsoleReport) -> HostAudit:
    """Lynis installed (a walk of one step), then run, in one session; never raises for the
    host's sake, so the other hosts are still audited."""
    name, started = job.config.name, time.monotonic()
    result = HostAudit(name)
    console.host_started(name)

    def heard(change: Change) -> None:
        result.changes.append(change)
        console.step_finished(name, change)

    try:
        with host_session(job) as session:
            walk = session.walk(heard, partial(console.action_started, name),
                                partial(console.action_progress, name))
            if not walk.run():
                raise ProvisionerError("Lynis could not be installed (see the step above).")
            console.action_started(name, AUDIT_LABEL)
            output = session.run_script(audit_script(), timeout=LYNIS_TIMEOUT + 60).stdout
        result.report = parse_audit_output(output)
    except ProvisionerError as error:
        result.error = str(error)
    result.seconds = time.monotonic() - started
    _report_audit(console, result)
    return result


def _report_audit(console: ConsoleReport, result: HostAudit) -> None:
    if result.report is not None:
        console.step_finished(result.name, Change.ok(
            AUDIT_LABEL, f"hardening index {result.report.hardening_index} in "
                         f"{result.seconds:.0f} s"))
    else:
        console.step_finished(result.name, Change.failure(AUDIT_LABEL, result.error))
