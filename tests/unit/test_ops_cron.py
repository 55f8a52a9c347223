"""cron.d files: only names cron reads, root-owned 0644, newline-terminated."""

from __future__ import annotations

from pathlib import Path

import pytest

from provisioner.facts import Facts
from provisioner.host import Host
from provisioner.inventory import HostConfig, SshSettings
from provisioner.ops.cron import ensure_cron_file, render_cron_file
from provisioner.ops.files import DesiredFile, write_file_action
from provisioner.step import Probed

JOB = "17 3 * * * root /usr/local/sbin/backup"


def make_host() -> Host:
    ssh = SshSettings(identity_file=None, known_hosts=Path("/dev/null"), trust_on_first_use=False,
                      jump_host=None, connect_timeout=10.0, command_timeout=60.0,
                      sudo_password=None)
    config = HostConfig("web1", "192.0.2.10", 22, "root", (), (), {}, ssh)
    facts = Facts("debian", "12", "bookworm", (), 2, 2 << 30, (), "systemd", "kvm", "web1",
                  "6.1.0-28-amd64", "amd64", False, (9, 2))
    return Host(config, {}, gather_facts=lambda: facts)


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
