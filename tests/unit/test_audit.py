"""invoke audit: Lynis's report read back, what is shown and kept, and the exit codes; the host
is never contacted here (an unknown host and a bad --min-index are refused before any)."""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime
from pathlib import Path

import pytest

from provisioner.cli import audit, load
from provisioner.cli.audit import (
    AuditReport,
    Finding,
    HostAudit,
    audit_job,
    audit_script,
    describe,
    exit_code,
    parse_audit_output,
    parse_finding,
    parse_report,
    record_data,
    top_findings,
)
from provisioner.errors import ProvisionerError
from provisioner.inventory.hosts import Inventory
from provisioner.run.engine import RunOptions

#: The lines audit_script keeps of a Debian 12 API host's /var/log/lynis-report.dat (3.0.8),
#: two texts shortened.
REPORT = """\
lynis_version=3.0.8
lynis_tests_done=257
hardening_index=86
warning[]=PKGS-7392|Found one or more vulnerable packages.|-|-|
suggestion[]=DEB-0810|Install apt-listbugs to display a list of critical bugs|-|-|
suggestion[]=SSH-7408|Consider hardening SSH configuration|Port (set 22 to )|-|
suggestion[]=KRNL-6000|One or more sysctl values differ from the scan profile||Change it|
"""
INVENTORY = """\
    defaults:
      user: admin
      ssh: {known_hosts: /dev/null}
      vars:
        host_secrets: {api_key: {}}
    hosts:
      api1: {address: 192.0.2.10, roles: [fail2ban]}
"""


@pytest.fixture
def inventory(tmp_path: Path) -> Inventory:
    path = tmp_path / "inventory.yml"
    path.write_text(textwrap.dedent(INVENTORY))
    return load(str(path))


def test_the_report_gives_the_index_version_tests_and_findings() -> None:
    report = parse_report(REPORT)

    assert (report.hardening_index, report.lynis_version, report.tests_performed) == \
        (86, "3.0.8", 257)
    assert report.warnings == (Finding("PKGS-7392", "Found one or more vulnerable packages."),)
    assert [finding.id for finding in report.suggestions] == ["DEB-0810", "SSH-7408", "KRNL-6000"]


@pytest.mark.parametrize(("value", "text"), [
    ("SSH-7408|Consider hardening SSH configuration|Port (set 22 to )|-|",
     "Consider hardening SSH configuration (Port (set 22 to ))"),
    ("FILE-6310|Place /var on a separate partition|-|-|", "Place /var on a separate partition"),
    ("KRNL-6000|Sysctl values differ||Change sysctl value|", "Sysctl values differ"),
    ("LYNIS|Old release", "Old release"),
])
def test_a_findings_details_join_its_text_unless_empty(value: str, text: str) -> None:
    assert parse_finding(value).text == text


def test_a_report_without_its_index_is_no_report() -> None:
    with pytest.raises(ValueError, match="hardening_index"):
        parse_report("lynis_version=3.0.8\n")


def test_the_hosts_output_is_read_after_the_exit_line() -> None:
    report = parse_audit_output(f"== exit 0\n== report\n{REPORT}")
    assert report.hardening_index == 86


def test_a_failed_lynis_says_its_own_words() -> None:
    with pytest.raises(ProvisionerError, match=r"failed \(exit 1\): Fatal error: no space"):
        parse_audit_output("== exit 1\nFatal error: no space left\n== report\n")


def test_a_lynis_past_its_timeout_is_said_to_be_stopped() -> None:
    with pytest.raises(ProvisionerError, match="did not finish within 900 s"):
        parse_audit_output("== exit 124\n== report\n")


def test_the_script_removes_the_old_report_before_lynis_runs() -> None:
    script = audit_script()
    assert script.index("rm -f /var/log/lynis-report.dat") < \
        script.index("lynis audit system --quick --no-colors")
    assert "timeout 900 lynis" in script and "</dev/null" in script


def test_warnings_come_before_suggestions_and_at_most_ten_are_shown() -> None:
    report = AuditReport(80, "3.0.8", 200, (Finding("W-1", "w"),),
                         tuple(Finding(f"S-{n}", "s") for n in range(12)))
    shown = top_findings(report)
    assert shown[0] == ("warning", Finding("W-1", "w")) and len(shown) == 10


def test_the_record_holds_the_keys_the_host_report_reads() -> None:
    data = record_data(parse_report(REPORT), datetime(2026, 12, 4, 5, 0, tzinfo=UTC))

    assert set(data) == {"hardening_index", "lynis_version", "ran_at", "warnings",
                         "suggestions", "tests_performed"}
    assert data["ran_at"] == "2026-12-04T05:00:00+00:00"
    assert data["warnings"] == [{"id": "PKGS-7392",
                                 "text": "Found one or more vulnerable packages."}]


def test_a_host_below_the_minimum_is_named_and_exits_1() -> None:
    scored = HostAudit("api1", parse_report(REPORT), seconds=41.0)

    assert describe(scored, min_index=90)[0].startswith(
        "== api1: hardening index 86, below --min-index 90 (Lynis 3.0.8, 257 tests")
    assert exit_code([scored], 90) == 1
    assert exit_code([scored], 86) == 0


def test_a_host_without_an_audit_exits_1() -> None:
    assert exit_code([HostAudit("api1", error="could not connect")], 0) == 1


@pytest.mark.parametrize("value", [-1, 101])
def test_a_min_index_outside_0_to_100_is_refused_before_contact(inventory: Inventory,
                                                                value: int) -> None:
    with pytest.raises(ProvisionerError, match="--min-index"):
        audit.audit(inventory, "api1", "", min_index=value)


def test_an_unknown_host_is_refused_before_contact(inventory: Inventory) -> None:
    with pytest.raises(ProvisionerError, match="api9"):
        audit.audit(inventory, "api9", "")


def test_the_audit_runs_no_role_and_generates_no_host_secret(inventory: Inventory) -> None:
    (job,) = audit.select_jobs(inventory, "api1", "", RunOptions())

    audited = audit_job(job)

    assert [role.name for role in audited.roles] == ["audit"]
    assert audited.variables == {} and dict(audited.config.vars) == {}
    assert audited.config.address == job.config.address
