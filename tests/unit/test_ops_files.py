"""Files, templates and directories: pure plans on recorded probe output."""

from __future__ import annotations

from pathlib import Path

import pytest

from provisioner.ops.file_writes import DesiredFile, write_file_action
from provisioner.ops.files import (
    ensure_absent,
    ensure_directory,
    ensure_file,
    ensure_template,
    plan_file,
)
from provisioner.ops.lines import ensure_line
from provisioner.ops.path_state import FileState
from provisioner.step import Probed
from tests.unit.fakes import make_host
from tests.unit.test_ops_path_state import WRITES, probe_output, run_sh, sha


def regular(data: bytes, owner: str = "root", group: str = "root", mode: int = 0o644,
            with_content: bool = False) -> FileState:
    return FileState("regular file", owner, group, mode, sha(data),
                     data if with_content else None)


# --- plan_file --------------------------------------------------------------------------------


NEW = b"PermitRootLogin no\n"


OLD = b"PermitRootLogin yes\n"


@pytest.mark.parametrize(
    ("current", "desired", "reason", "acts"),
    [
        (None, DesiredFile("/etc/motd", NEW), "created", True),
        (regular(NEW), DesiredFile("/etc/motd", NEW), "already as desired", False),
        (regular(OLD), DesiredFile("/etc/motd", NEW), "content changed", True),
        (regular(NEW), DesiredFile("/etc/motd", NEW, mode=0o600), "mode 0644 -> 0600", True),
        (regular(NEW, owner="www-data"), DesiredFile("/etc/motd", NEW),
         "owner www-data:root -> root:root", True),
        (regular(NEW, group="adm", mode=0o640), DesiredFile("/etc/motd", NEW),
         "owner root:adm -> root:root, mode 0640 -> 0644", True),
        (regular(OLD, mode=0o600), DesiredFile("/etc/motd", None, mode=0o600),
         "already as desired", False),
        (regular(OLD), DesiredFile("/etc/motd", None, mode=0o600), "mode 0644 -> 0600", True),
        (None, DesiredFile("/etc/motd", None), "/etc/motd is missing and no content was given",
         True),
        (FileState("regular empty file", "root", "root", 0o644, sha(b"")),
         DesiredFile("/etc/motd", b""), "already as desired", False),
    ],
    ids=["absent", "same", "content-differs", "mode-differs", "owner-differs",
         "group-and-mode-differ", "attributes-only-same", "attributes-only-differ",
         "attributes-only-missing", "empty-file-same"],
)
def test_plan_file(current: FileState | None, desired: DesiredFile, reason: str,
                   acts: bool) -> None:
    plan = plan_file(current, desired)

    assert (plan.reason, plan.changes) == (reason, acts)


def test_plan_file_mode_change_is_a_chmod_not_a_rewrite() -> None:
    plan = plan_file(regular(NEW), DesiredFile("/etc/motd", NEW, mode=0o600))

    assert plan.action == "chown root:root /etc/motd && chmod 0600 /etc/motd"


def test_plan_file_content_change_is_the_atomic_write() -> None:
    desired = DesiredFile("/etc/motd", NEW)

    assert plan_file(regular(OLD), desired).action == write_file_action(desired)


def test_plan_file_for_missing_file_without_content_fails_on_the_host() -> None:
    plan = plan_file(None, DesiredFile("/etc/motd", None))

    assert run_sh(plan.action or "").returncode == 1


@pytest.mark.parametrize("kind", ["directory", "symbolic link", "fifo", "socket"])
def test_plan_file_refuses_to_replace_a_non_regular_file(kind: str) -> None:
    plan = plan_file(FileState(kind, "root", "root", 0o755, ""), DesiredFile("/etc/motd", NEW))

    assert plan.reason == f"/etc/motd is a {kind}, refusing to replace it"
    assert run_sh(plan.action or "").returncode == 1


def test_plan_file_has_no_diff_unless_asked() -> None:
    plan = plan_file(regular(OLD, with_content=True), DesiredFile("/etc/motd", NEW))

    assert plan.diff is None


def test_plan_file_shows_a_diff_when_asked() -> None:
    plan = plan_file(regular(OLD, with_content=True), DesiredFile("/etc/motd", NEW),
                     show_diff=True)

    assert plan.diff == ("--- /etc/motd (current)\n+++ /etc/motd (desired)\n@@ -1 +1 @@\n"
                         "-PermitRootLogin yes\n+PermitRootLogin no\n")


def test_plan_file_without_change_has_no_diff_even_when_asked() -> None:
    plan = plan_file(regular(NEW, with_content=True), DesiredFile("/etc/motd", NEW),
                     show_diff=True)

    assert plan.diff is None


def test_plan_file_runs_the_safeguard_save_before_the_write() -> None:
    plan = plan_file(regular(OLD), DesiredFile("/etc/motd", NEW), save="SAVE\n")

    assert (plan.action or "").startswith("SAVE\nset -e\n")


def test_plan_file_names_the_missing_directories_it_creates() -> None:
    one = plan_file(None, DesiredFile("/etc/modprobe.d/x.conf", NEW),
                    missing=["/etc/modprobe.d"])
    two = plan_file(None, DesiredFile("/etc/a/b/x.conf", NEW), missing=["/etc/a", "/etc/a/b"])

    assert one.reason == "created, with missing directory /etc/modprobe.d"
    assert two.reason == "created, with missing directories /etc/a, /etc/a/b"


def test_check_mode_reports_the_directory_a_file_needs() -> None:
    step = ensure_file(make_host(check=True), "/etc/modprobe.d/provisioner.conf", "x\n")

    plan = step.decide(Probed("absent 1\n"))

    assert plan.reason == "created, with missing directory /etc/modprobe.d"


# --- Steps built by ensure_* ------------------------------------------------------------------


def test_file_steps_share_the_paths_group_unless_they_need_the_content() -> None:
    host = make_host()
    plain = ensure_file(host, "/etc/a", "x\n")
    line = ensure_line(host, "/etc/b", "x")

    assert plain.grouped is not None and plain.grouped.item == "/etc/a"
    assert line.grouped is None


@pytest.mark.parametrize("show_diff", [False, True], ids=["plain", "diff-mode"])
def test_ensure_file_probe_is_read_only(show_diff: bool) -> None:
    step = ensure_file(make_host(show_diff=show_diff), "/etc/motd", "hello\n")

    assert not WRITES.search(step.probe)


def test_ensure_file_reads_content_only_in_diff_mode() -> None:
    plain = ensure_file(make_host(), "/etc/motd", "hello\n")
    diff = ensure_file(make_host(show_diff=True), "/etc/motd", "hello\n")

    assert ("base64" in plain.probe, "base64" in diff.probe) == (False, True)


def test_ensure_file_decides_created_for_an_absent_file() -> None:
    step = ensure_file(make_host(), "/etc/motd", "hello\n", mode=0o600)

    plan = step.decide(Probed("absent\n"))

    assert plan.reason == "created"
    assert plan.action == write_file_action(DesiredFile("/etc/motd", b"hello\n", mode=0o600))


def test_ensure_file_decides_nothing_for_a_converged_file() -> None:
    step = ensure_file(make_host(), "/etc/motd", "hello\n")

    plan = step.decide(Probed(probe_output(b"hello\n")))

    assert (plan.reason, plan.action) == ("already as desired", None)


def test_ensure_file_in_diff_mode_diffs_against_the_probed_content() -> None:
    step = ensure_file(make_host(show_diff=True), "/etc/motd", "hello\n")

    plan = step.decide(Probed(probe_output(b"bye\n", with_content=True)))

    assert plan.diff is not None
    assert "-bye\n+hello\n" in plan.diff


def test_ensure_file_in_diff_mode_diffs_an_empty_file_as_existing() -> None:
    step = ensure_file(make_host(show_diff=True), "/etc/motd", "hello\n")
    empty = f"regular empty file|root|root|644|{sha(b'')}\ncontent:"

    plan = step.decide(Probed(empty))

    assert (plan.diff or "").startswith("--- /etc/motd (current)\n")


def test_ensure_template_renders_into_the_file(tmp_path: Path) -> None:
    (tmp_path / "motd.j2").write_text("Welcome to {{ host_name }} ({{ facts.os_codename }})\n")
    host = make_host()
    host = host.for_role(tmp_path)

    step = ensure_template(host, "/etc/motd", "motd.j2")

    assert step.decide(Probed(probe_output(b"Welcome to web1 (bookworm)\n"))).action is None


def test_ensure_absent_moves_an_existing_file_to_the_backups() -> None:
    plan = ensure_absent(make_host(), "/etc/cron.d/old").decide(Probed(probe_output(b"x\n")))

    assert plan.reason == "removed"
    assert "mv -f /etc/cron.d/old /var/backups/provisioner/etc/cron.d/old." in (plan.action or "")


def test_ensure_absent_does_nothing_when_already_absent() -> None:
    plan = ensure_absent(make_host(), "/etc/cron.d/old").decide(Probed("absent\n"))

    assert (plan.reason, plan.action) == ("already absent", None)


@pytest.mark.parametrize(
    ("output", "reason", "action"),
    [
        ("absent\n", "created",
         "set -e\nif [ ! -d /srv ]; then mkdir -m 0755 /srv; chown root:root /srv; m0=1; fi\n"
         "mkdir -m 0750 /srv/app\nchown app:app /srv/app\nchmod 0750 /srv/app"),
        ("directory|app|app|750|\n", "already as desired", None),
        ("directory|root|root|755|\n", "owner root:root -> app:app, mode 0755 -> 0750",
         "chown app:app /srv/app && chmod 0750 /srv/app"),
        ("regular file|app|app|750|abc\n", "/srv/app is a regular file, not a directory",
         "echo '/srv/app is not a directory' >&2; exit 1"),
    ],
    ids=["absent", "same", "attributes-differ", "is-a-file"],
)
def test_ensure_directory(output: str, reason: str, action: str | None) -> None:
    step = ensure_directory(make_host(), "/srv/app", owner="app", group="app", mode=0o750)

    plan = step.decide(Probed(output))

    assert (plan.reason, plan.action) == (reason, action)
