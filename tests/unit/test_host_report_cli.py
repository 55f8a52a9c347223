"""``invoke report`` and ``provision --html`` on the command line: what is refused before any
contact (one paragraph, exit 2), the records a run keeps, and a page drawn offline."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap
from datetime import UTC, datetime
from pathlib import Path

import pytest

from provisioner.change import Change
from provisioner.records import load_record, save_record
from provisioner.report.provision_record import save_provision_records
from provisioner.run.results import HostResult, RunResult
from provisioner.run.session import HostJob
from tests.unit.fakes import host_config
from tests.unit.page_figures import expected_figures, figures

PROJECT_ROOT = Path(__file__).resolve().parents[2]
# An address of TEST-NET-1: a test that contacted it would hang, not pass.
INVENTORY = """\
    defaults:
      user: admin
      ssh: {known_hosts: /dev/null}
    hosts:
      web1: {address: 192.0.2.10, roles: [ufw]}
"""


@pytest.fixture
def inventory(tmp_path: Path) -> Path:
    path = tmp_path / "inventory.yml"
    path.write_text(textwrap.dedent(INVENTORY))
    return path


def invoke(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "invoke", *args], cwd=PROJECT_ROOT,
                          capture_output=True, text=True, timeout=120, check=False,
                          env=dict(os.environ))


def one_paragraph_exit_2(done: subprocess.CompletedProcess[str], starts: str) -> None:
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.startswith(f"error: {starts}"), done.stderr
    assert "Traceback" not in done.stderr and done.stderr.strip().count("\n") == 0


def test_report_without_a_page_or_json_file_says_to_give_one(inventory: Path) -> None:
    one_paragraph_exit_2(invoke("report", "--host", "web1", "-i", str(inventory)),
                         "invoke report writes the page to --html FILE")


@pytest.mark.parametrize("task", ["report", "provision"])
def test_an_html_path_that_cannot_be_written_is_refused_before_any_contact(
        task: str, inventory: Path, tmp_path: Path) -> None:
    done = invoke(task, "--host", "web1", "-i", str(inventory),
                  "--html", str(tmp_path / "missing" / "page.html"))

    one_paragraph_exit_2(done, f"--html {tmp_path / 'missing' / 'page.html'}: the directory")


def test_an_html_path_that_is_a_directory_is_refused(inventory: Path, tmp_path: Path) -> None:
    done = invoke("provision", "-i", str(inventory), "--html", str(tmp_path))

    one_paragraph_exit_2(done, f"--html {tmp_path}: this is a directory; give a file name, "
                               f"for example --html {tmp_path / 'host-report.html'}")


def test_report_of_an_unknown_host_names_the_hosts_there_are(inventory: Path,
                                                             tmp_path: Path) -> None:
    done = invoke("report", "--host", "web9", "-i", str(inventory),
                  "--html", str(tmp_path / "page.html"))

    one_paragraph_exit_2(done, "--host web9: no such host")
    assert "web1" in done.stderr


def test_report_of_a_host_never_provisioned_says_to_provision_it(inventory: Path,
                                                                 tmp_path: Path) -> None:
    done = invoke("report", "--host", "web1", "-i", str(inventory),
                  "--html", str(tmp_path / "page.html"))

    one_paragraph_exit_2(done, f"no provision record for host web1 of inventory {inventory}: "
                               "run invoke provision --host web1 first")
    assert not (tmp_path / "page.html").exists()


def ufw_job() -> HostJob:
    return HostJob(host_config("web1", "192.0.2.10"), (), {})


def test_every_run_keeps_each_hosts_record_but_a_host_it_never_started_keeps_its_last(
        tmp_path: Path) -> None:
    inventory = tmp_path / "inventory.yml"
    other = HostJob(host_config("web2", "192.0.2.11"), (), {})
    save_record(inventory, "web2", "provision", {"host": "web2", "ran_at": "earlier"})
    run = RunResult({"web1": HostResult("web1", [Change.made("ufw rules", "added")],
                                        round_trips=2, duration=1.0),
                     "web2": HostResult("web2", skipped="an earlier batch failed")})

    save_provision_records(inventory, [ufw_job(), other], run, diffs=False,
                           finished=datetime(2026, 12, 4, 9, 0, 1, tzinfo=UTC))

    record = load_record(inventory, "web1", "provision")
    assert record is not None
    assert (record["changed"], record["round_trips"], record["ran_at"]) == \
        (1, 2, "2026-12-04T09:00:00Z")
    assert load_record(inventory, "web2", "provision") == {"host": "web2", "ran_at": "earlier"}


def test_an_offline_report_is_drawn_from_the_records_and_written_owner_only(
        inventory: Path, tmp_path: Path) -> None:
    run = RunResult({"web1": HostResult("web1", [Change.ok("ufw rules", "same")],
                                        round_trips=1, duration=0.3)})
    save_provision_records(inventory, [ufw_job()], run, diffs=False)
    page, data_file = tmp_path / "page.html", tmp_path / "page.json"

    done = invoke("report", "--host", "web1", "-i", str(inventory), "--offline",
                  "--html", str(page), "--json", str(data_file))

    assert done.returncode == 0, done.stdout + done.stderr
    data = json.loads(data_file.read_text())
    assert data["hosts"]["web1"]["live"] == {"read": False, "reason": "not read (--offline)",
                                             "deploy_history": None, "backup": None,
                                             "certificates": None}
    assert figures(page.read_text()) == expected_figures(data)
    assert {stat.S_IMODE(path.stat().st_mode) for path in (page, data_file)} == {0o600}


def test_report_of_every_host_leaves_out_those_never_provisioned_and_says_so(
        tmp_path: Path) -> None:
    inventory = tmp_path / "inventory.yml"
    inventory.write_text(textwrap.dedent(INVENTORY) +
                         "  web2: {address: 192.0.2.11, roles: [ufw]}\n")
    run = RunResult({"web1": HostResult("web1", [Change.ok("ufw rules", "same")])})
    save_provision_records(inventory, [ufw_job()], run, diffs=False)

    done = invoke("report", "-i", str(inventory), "--offline",
                  "--json", str(tmp_path / "page.json"))

    assert done.returncode == 0, done.stdout + done.stderr
    assert list(json.loads((tmp_path / "page.json").read_text())["hosts"]) == ["web1"]
    assert "left out, never provisioned from this machine: web2" in done.stderr
