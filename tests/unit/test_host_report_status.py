"""The host report's live part and verify record: which parts a host is asked for, in one
script; what its answer becomes; a host that cannot be reached; pytest's JUnit XML read back."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

import pytest

from provisioner.cli import host_status, load
from provisioner.cli.host_status import (
    MARKER,
    StatusPlan,
    parse_backups,
    parse_status_output,
    read_host_status,
    status_plan,
    status_script,
)
from provisioner.deploy.history import Entry
from provisioner.errors import ConnectError
from provisioner.inventory.hosts import Inventory
from provisioner.report.verify_record import junit_argument, junit_counts
from provisioner.run.engine import RunOptions, prepare
from provisioner.run.session import HostJob
from provisioner.secrets.values import Secret

# Addresses of TEST-NET-1: a test that contacted them would hang, not pass.
INVENTORY = """\
    defaults:
      user: admin
      ssh: {known_hosts: /dev/null}
    hosts:
      web1:
        address: 192.0.2.10
        roles: [nginx]
        vars:
          nginx_upstreams: [{name: web, servers: ["127.0.0.1:9000"]}]
          nginx_sites:
            - {name: shop, server_names: [shop.example.test], certificate: self-signed,
               locations: [{path: /, upstream: web}]}
      db1: {address: 192.0.2.20, roles: [backups], vars: {backups_databases: [app]}}
      bare1: {address: 192.0.2.30, roles: [ufw]}
"""
NOW = datetime(2026, 12, 4, 9, 30, tzinfo=UTC)
CERTIFICATE = """issuer=CN = shop.example.test
notBefore=Dec  4 09:00:00 2026 GMT
notAfter=Dec  4 09:00:00 2027 GMT
X509v3 Subject Alternative Name:
    DNS:shop.example.test
"""
#: What ``provisioner-backup list`` and ``status`` printed on a sandbox machine after a
#: backup.now and a backup.verify (a nightly archive added before them); each status line ends
#: with a space (the record's lines joined by spaces).
ARCHIVES = """20261204T051449Z-ondemand/app.dump  847 bytes
20261204T051449Z-ondemand/globals.sql  785 bytes (roles: psql -f it by hand; not for restore)
20261204T030000Z/app.dump  840 bytes
"""
STATUS = ("last backup: result=ok time=2026-12-04T05:14:49Z archive=20261204T051449Z-ondemand "
          "reason=databases: app \nlast verify: result=ok time=2026-12-04T05:14:50Z "
          "archive=20261204T051449Z-ondemand reason=app (no tables) \n")


@pytest.fixture
def inventory(tmp_path: Path) -> Inventory:
    path = tmp_path / "inventory.yml"
    path.write_text(textwrap.dedent(INVENTORY))
    return load(str(path))


def plan_of(inventory: Inventory, name: str) -> StatusPlan:
    (job,) = prepare([inventory.hosts[name]], RunOptions())
    return status_plan(job, str(inventory.path))


def marked(name: str, text: str) -> str:
    return MARKER.format(name) + "\n" + text


def test_a_host_is_asked_only_for_the_parts_its_roles_have(inventory: Inventory) -> None:
    web, db = status_script(plan_of(inventory, "web1")), status_script(plan_of(inventory, "db1"))

    assert "openssl x509" in web and "provisioner-backup" not in web
    assert "provisioner-backup list" in db and "openssl" not in db


def test_a_host_with_none_of_the_parts_is_still_asked_so_one_that_is_down_says_so(
        inventory: Inventory, monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[str] = []

    @contextmanager
    def refused(job: HostJob, check: bool = False) -> Iterator[None]:
        sent.append(job.config.name)
        raise ConnectError("bare1 (192.0.2.30:22): no route to host")
        yield

    monkeypatch.setattr(host_status, "host_session", refused)
    plan = plan_of(inventory, "bare1")
    status = read_host_status(plan, NOW)

    assert status_script(plan) == "" and sent == ["bare1"]
    assert status["read"] is False and "no route to host" in status["reason"]


def test_a_certificate_becomes_its_days_left(inventory: Inventory) -> None:
    plan = plan_of(inventory, "web1")
    output = marked("certificates", "== site shop\n" + CERTIFICATE + "== version\n== timer\n")

    (row,) = parse_status_output(output, plan, NOW)["certificates"]

    assert (row["site"], row["present"], row["days_left"]) == ("shop", True, 364)
    assert row["not_after"] == "2027-12-04T09:00:00Z" and row["names"] == ["shop.example.test"]


def test_the_backups_become_the_latest_archive_its_age_and_the_last_runs() -> None:
    backups = parse_backups(ARCHIVES, STATUS, NOW)

    assert (backups["latest_archive"], backups["latest_age_hours"], backups["archives"]) == \
        ("20261204T051449Z-ondemand", 4.3, 2)
    assert backups["last_backup"] == {"result": "ok", "time": "2026-12-04T05:14:49Z",
                                      "archive": "20261204T051449Z-ondemand",
                                      "reason": "databases: app"}
    assert backups["last_restore_test"]["reason"] == "app (no tables)"


def test_a_host_never_backed_up_has_no_latest_archive_nor_last_runs() -> None:
    backups = parse_backups("", "last backup: never\nlast verify: never\n", NOW)

    assert (backups["installed"], backups["latest_archive"], backups["last_backup"],
            backups["last_restore_test"]) == (True, None, None, None)


def test_the_deploy_history_is_shown_newest_first_and_a_damaged_line_counted() -> None:
    lines = [json.dumps(asdict(Entry("deploy", version, previous, "me@box",
                                     f"2026-12-0{day}T08:00:00Z", 12.5, "ok")))
             for day, version, previous in ((1, "v1", ""), (2, "v2", "v1"))]
    output = marked("deploy-history", "\n".join([lines[0], '{"cut', lines[1]]) + "\n")

    plan = StatusPlan(job=None, application="api", history_file="/x")  # type: ignore[arg-type]

    history = parse_status_output(output, plan, NOW)["deploy_history"]

    assert [entry["version"] for entry in history["entries"]] == ["v2", "v1"]
    assert (history["application"], history["damaged_lines"]) == ("api", 1)


def test_a_host_without_the_backup_program_yet_says_so() -> None:
    assert parse_backups("not installed\n", "", NOW)["installed"] is False


def test_an_unreachable_host_gets_a_reason_not_a_traceback(
        inventory: Inventory, monkeypatch: pytest.MonkeyPatch) -> None:
    @contextmanager
    def refused(job: HostJob, check: bool = False) -> Iterator[None]:
        raise ConnectError("web1 (192.0.2.10:22): connection refused")
        yield

    monkeypatch.setattr(host_status, "host_session", refused)
    status = read_host_status(plan_of(inventory, "web1"), NOW)

    assert status["read"] is False
    assert status["reason"] == "host unreachable: web1 (192.0.2.10:22): connection refused"


JUNIT = """<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest" errors="0"
failures="1" skipped="1" tests="4"><testcase classname="" name="test_a[ssh://web1]"/>
<testcase classname="" name="test_b[ssh://web1-port-22]"><failure message="x">boom</failure>
</testcase><testcase classname="" name="test_c[ssh://web1]"><skipped message="no"/></testcase>
<testcase classname="" name="test_d[ssh://web1-hunter2hunter2]"><error message="e"/></testcase>
</testsuite></testsuites>"""


def test_junit_xml_gives_the_counts_and_the_failing_names_without_the_host() -> None:
    counts = junit_counts(JUNIT, "web1", [Secret("hunter2hunter2")])

    assert (counts["passed"], counts["failed"], counts["skipped"]) == (1, 2, 1)
    assert counts["failing"] == ["test_b[port-22]", "test_d[***]"]


@pytest.mark.parametrize(("arguments", "found"), [
    (["-x", "--junitxml=/tmp/j.xml"], "/tmp/j.xml"), (["--junit-xml", "/tmp/k.xml"], "/tmp/k.xml"),
    (["-k", "ssh"], "")], ids=["equals", "separate", "none"])
def test_a_junit_file_of_the_callers_own_is_the_one_read(arguments: list[str], found: str) -> None:
    assert junit_argument(arguments) == found
