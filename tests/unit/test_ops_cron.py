"""cron.d files: only names cron reads, root-owned 0644, newline-terminated."""

from __future__ import annotations

import pytest

from provisioner.ops.cron import ensure_cron_file, render_cron_file
from provisioner.ops.file_writes import DesiredFile, write_file_action
from provisioner.step import Probed
from tests.unit.fakes import make_host

JOB = "17 3 * * * root /usr/local/sbin/backup"


def test_render_cron_file_has_header_environment_then_jobs_and_a_final_newline() -> None:
    text = render_cron_file([JOB], {"MAILTO": "ops@example.org"}, "Managed by provisioner")

    assert text == f"# Managed by provisioner\nMAILTO=ops@example.org\n{JOB}\n"


@pytest.mark.parametrize("name", ["backup.cron", "backup~", "my backup", "backup/daily", ""],
                         ids=["dot", "tilde", "space", "slash", "empty"])
def test_ensure_cron_file_refuses_a_name_cron_would_ignore(name: str) -> None:
    with pytest.raises(ValueError, match="would be silently ignored by cron"):
        ensure_cron_file(make_host(), name, [JOB])


def test_ensure_cron_file_refuses_a_name_ending_in_a_newline() -> None:
    with pytest.raises(ValueError):
        ensure_cron_file(make_host(), "backup\n", [JOB])


def test_ensure_cron_file_writes_a_root_owned_0644_file_under_cron_d() -> None:
    step = ensure_cron_file(make_host(), "backup-db_1", [JOB])

    plan = step.decide(Probed("absent\n"))

    assert plan.action == write_file_action(DesiredFile(
        "/etc/cron.d/backup-db_1", f"# Managed by provisioner\n{JOB}\n".encode(), "root", "root",
        0o644))
