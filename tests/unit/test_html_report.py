"""The host report page, from records made of a fake run: what comes first, what is folded,
what is masked and escaped, what a missing record says, and that its figures are the JSON's."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from provisioner.change import Change
from provisioner.content.roles import Role
from provisioner.errors import ProvisionerError
from provisioner.output.html_report import render_page
from provisioner.records import save_record
from provisioner.report.data import check_records, page_data
from provisioner.report.provision_record import provision_record
from provisioner.run.results import HostResult
from provisioner.run.session import HostJob
from provisioner.secrets.values import Secret
from provisioner.step import Plan, Step
from tests.unit.fakes import host_config
from tests.unit.page_figures import expected_figures, figures

SECRET = "s3cr3t-Value-0f-the-inventory"
INVENTORY = Path("/srv/inventories/production.yml")
FINISHED = datetime(2026, 12, 4, 9, 30, tzinfo=UTC)
DIFF = ("--- /etc/app.env (current)\n+++ /etc/app.env (desired)\n@@ -1 +1 @@\n"
        "-PASSWORD=old\n+PASSWORD=" + SECRET + "\n")


def role(name: str, labels: list[str], handlers: tuple[str, ...] = ()) -> Role:
    steps = [Step(label, "true", lambda probed: Plan(None, "ok")) for label in labels]
    return Role(name, Path("/nonexistent") / name, {}, dict.fromkeys(handlers, lambda h: None),
                lambda host: steps)  # type: ignore[arg-type]


def job(*roles: Role) -> HostJob:
    return HostJob(host_config("web1", roles=[r.name for r in roles]), roles,
                   {"app_password": Secret(SECRET)})


def run_result(*changes: Change, error: str | None = None) -> HostResult:
    return HostResult("web1", list(changes), error=error, round_trips=3, duration=2.5,
                      connection="reused")


def keep(result: HostResult, the_job: HostJob, **records: dict[str, Any]) -> dict[str, Any]:
    """Save the run's record (and any other records), then the page's data."""
    save_record(INVENTORY, "web1", "provision",
                provision_record(the_job, result, check=False, diffs=True, finished=FINISHED))
    for kind, record in records.items():
        save_record(INVENTORY, "web1", kind, record)
    return page_data(INVENTORY, ["web1"], {}, generated=FINISHED)


BASE = role("base", ["packages", "sshd config", "banner"], handlers=("ssh:reload",))
WEB = role("web", ["site shop", "tls"])


def test_changed_and_failed_steps_come_first_and_their_roles_before_converged_ones() -> None:
    data = keep(run_result(Change.ok("packages", "installed"), Change.ok("sshd config", "same"),
                           Change.ok("banner", "same"), Change.ok("site shop", "same"),
                           Change.made("tls", "renewed"), Change.failure("tls", "refused")),
                job(BASE, WEB))
    roles = data["hosts"]["web1"]["provision"]["roles"]

    assert [r["name"] for r in roles] == ["web", "base"]
    assert [step["status"] for step in roles[0]["steps"]] == ["failed", "changed", "ok"]
    assert (roles[0]["ok"], roles[0]["changed"], roles[0]["failed"]) == (1, 1, 1)


def test_a_step_goes_to_the_role_that_has_it_and_a_handler_to_its_role() -> None:
    data = keep(run_result(Change.made("packages", "installed"),
                           Change.made("directory /etc/x", "created"),
                           Change.made("handler ssh:reload", "ran"),
                           Change.made("site shop", "created")), job(BASE, WEB))
    roles = {r["name"]: [s["label"] for s in r["steps"]]
             for r in data["hosts"]["web1"]["provision"]["roles"]}

    assert roles == {"base": ["packages", "directory /etc/x", "handler ssh:reload"],
                     "web": ["site shop"]}


def test_each_diff_is_folded_in_a_details_element() -> None:
    data = keep(run_result(Change.made("packages", "content changed",
                                       "--- a\n+++ b\n+line\n")), job(BASE))
    page = render_page(data)

    assert '<details class="diff"><summary>diff</summary><pre>--- a\n+++ b\n+line\n</pre>' \
        in page


def test_an_inventory_secret_never_reaches_the_record_the_json_or_the_page() -> None:
    data = keep(run_result(Change.made(f"template with {SECRET}", f"set to {SECRET}", DIFF),
                           error=f"failed: {SECRET}"), job(BASE))
    page = render_page(data)

    assert SECRET not in page and SECRET not in json.dumps(data)
    assert "PASSWORD=***" in page and "-PASSWORD=old" not in page  # the old value masked too


def test_markup_in_a_label_or_reason_shows_as_text_and_the_page_has_no_script() -> None:
    hostile = "<script>alert('x')</script>"
    data = keep(run_result(Change.made(f"packages {hostile}", f"because {hostile}",
                                       f"+{hostile}\n")), job(BASE))
    page = render_page(data)

    assert "<script" not in page.lower()
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in page


def test_the_page_loads_nothing_and_runs_nothing() -> None:
    page = render_page(keep(run_result(Change.ok("packages", "same")), job(BASE)))

    assert " src=" not in page and "<link" not in page and "http://" not in page
    assert "default-src 'none'" in page


def test_a_host_without_verify_or_audit_records_says_how_to_make_them() -> None:
    page = render_page(keep(run_result(Change.ok("packages", "same")), job(BASE)))

    assert "Not verified yet: run invoke verify --host web1." in page
    assert "Not audited — run invoke audit --host web1." in page
    assert "The live status could not be read: not read." in page


def test_an_audit_record_shows_its_index_and_top_findings() -> None:
    audit = {"hardening_index": 86, "lynis_version": "3.0.8", "ran_at": "2026-12-04T09:00:00Z",
             "warnings": [{"id": "SSH-7408", "text": "<b>tighten</b> sshd"}],
             "suggestions": [{"id": f"SUG-{n}", "text": f"do {n}"} for n in range(12)]}
    data = keep(run_result(Change.ok("packages", "same")), job(BASE), audit=audit)
    page = render_page(data)

    assert data["hosts"]["web1"]["audit"]["suggestions_total"] == 12
    assert "SUG-9" in page and "SUG-10" not in page  # the top ten
    assert "&lt;b&gt;tighten&lt;/b&gt; sshd" in page


def test_a_host_without_a_provision_record_is_refused_saying_how_to_make_one() -> None:
    with pytest.raises(ProvisionerError, match=r"^no provision record for host db1 of inventory "
                                                r"/srv/inventories/production.yml: run invoke "
                                                r"provision --host db1 first"):
        check_records(INVENTORY, ["db1"])


def test_every_figure_on_the_page_is_the_json_value_and_every_json_figure_is_shown() -> None:
    verify = {"host": "web1", "ran_at": "2026-12-04T09:31:00Z", "exit_code": 1,
              "duration_seconds": 4.2, "passed": 79, "failed": 1, "skipped": 2,
              "failing": ["test_root_login_is_refused"]}
    live = {"read": True, "read_at": "2026-12-04T09:32:00Z", "round_trips": 1,
            "deploy_history": {"application": "api", "damaged_lines": 0, "entries": [
                {"action": "deploy", "version": "v2", "previous": "v1", "who": "me@box",
                 "started": "2026-12-04T08:00:00Z", "duration_s": 12.5, "result": "ok",
                 "detail": ""}]},
            "backup": {"installed": True, "archives": 3, "latest_archive": "20261204T030000Z",
                       "latest_age_hours": 6.5, "last_backup": None, "last_restore_test": None},
            "certificates": [{"site": "shop", "source": "self-signed", "path": "/x",
                              "present": True, "names": ["shop.test"], "issuer": "CN = shop",
                              "not_after": "2027-12-04T09:00:00Z", "days_left": 364,
                              "renewal_due": None, "renewal_rule": None,
                              "renewal_timer_next": None}]}
    data = keep(run_result(Change.made("packages", "installed")), job(BASE), verify=verify)
    data["hosts"]["web1"]["live"] = live
    page = render_page(data)

    assert figures(page) == expected_figures(data)
    assert figures(page)[("web1", "certificates.shop.days_left")] == "364"
    assert "test_root_login_is_refused" in page


def test_a_host_whose_live_status_could_not_be_read_says_why() -> None:
    data = keep(run_result(Change.ok("packages", "same")), job(BASE))
    data["hosts"]["web1"]["live"] = {"read": False, "reason": "host unreachable: timed out",
                                     "deploy_history": None, "backup": None,
                                     "certificates": None}

    assert "The live status could not be read: host unreachable: timed out." in \
        render_page(data)
