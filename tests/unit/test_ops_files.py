"""Files and lines: pure plans on recorded probe output, and the atomic write run for real."""

from __future__ import annotations

import base64
import grp
import hashlib
import os
import pwd
import re
import stat
import subprocess
from pathlib import Path

import pytest

from provisioner.commands import quote
from provisioner.ops import files
from provisioner.ops.files import (
    DesiredFile,
    FileState,
    backup_command,
    directories_above,
    ensure_absent,
    ensure_directory,
    ensure_file,
    ensure_line,
    missing_directories,
    parse_path_state,
    plan_file,
    plan_line,
    probe_path,
    probe_paths,
    safeguard_save,
    split_paths_output,
    write_file_action,
)
from provisioner.step import Probed
from tests.unit.hosts import make_host

USER = pwd.getpwuid(os.getuid()).pw_name
GROUP = grp.getgrgid(os.getgid()).gr_name
WRITES = re.compile(r">|\b(mv|rm|cp|chmod|chown|mkdir|touch|tee|sed|truncate|install)\b")


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def regular(data: bytes, owner: str = "root", group: str = "root", mode: int = 0o644,
            with_content: bool = False) -> FileState:
    return FileState("regular file", owner, group, mode, sha(data),
                     data if with_content else None)


def probe_output(data: bytes, mode: str = "644", with_content: bool = False) -> str:
    """What probe_path prints for an existing root-owned regular file."""
    content = "content:" + base64.b64encode(data).decode() if with_content else ""
    return f"regular file|root|root|{mode}|{sha(data)}\n{content}"


def run_sh(script: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=30,
                          check=False)


# --- parse_path_state on recorded output ------------------------------------------------------


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        ("absent\n", None),
        ("", None),
        ("regular file|root|root|644|" + sha(b"x\n") + "\n",
         FileState("regular file", "root", "root", 0o644, sha(b"x\n"))),
        ("regular empty file|root|adm|640|" + sha(b"") + "\n",
         FileState("regular empty file", "root", "adm", 0o640, sha(b""))),
        ("directory|www-data|www-data|2775|\n",
         FileState("directory", "www-data", "www-data", 0o2775, "")),
        ("regular file|root|root|4755|" + sha(b"x\n") + "\ncontent:eAo=",
         FileState("regular file", "root", "root", 0o4755, sha(b"x\n"), b"x\n")),
        ("symbolic link|root|root|777|\n", FileState("symbolic link", "root", "root", 0o777, "")),
    ],
    ids=["absent", "nothing", "regular", "empty", "setgid-directory", "setuid-with-content",
         "symlink"],
)
def test_parse_path_state_reads_recorded_probe_output(
        output: str, expected: FileState | None) -> None:
    assert parse_path_state(output) == expected


def test_probe_path_output_parses_into_the_files_real_state(tmp_path: Path) -> None:
    path = tmp_path / "config"
    path.write_bytes(b"key = value\n")
    path.chmod(0o640)

    completed = run_sh(probe_path(str(path), with_content=True))

    assert parse_path_state(completed.stdout) == FileState(
        "regular file", USER, GROUP, 0o640, sha(b"key = value\n"), b"key = value\n")


def test_probe_path_reports_a_directory_without_checksum(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir(mode=0o750)
    (tmp_path / "d").chmod(0o750)

    completed = run_sh(probe_path(str(tmp_path / "d")))

    assert parse_path_state(completed.stdout) == FileState("directory", USER, GROUP, 0o750, "")


@pytest.mark.parametrize("name", ["a|b.conf", "back\\slash.conf", "new\nline.conf"],
                         ids=["pipe", "backslash", "newline"])
def test_probe_path_reads_the_checksum_of_an_awkward_file_name(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(b"x\n")

    state = parse_path_state(run_sh(probe_path(str(path))).stdout)

    assert state is not None and state.sha256 == sha(b"x\n")


def test_probe_path_reports_a_missing_path_as_absent(tmp_path: Path) -> None:
    completed = run_sh(probe_path(str(tmp_path / "missing")))

    assert parse_path_state(completed.stdout) is None


def test_probe_path_counts_the_missing_directories_above_a_missing_path(tmp_path: Path) -> None:
    path = str(tmp_path / "modprobe.d" / "conf.d" / "blocked.conf")

    output = run_sh(probe_path(path)).stdout

    assert (output, parse_path_state(output)) == ("absent 2\n", None)
    assert missing_directories(path, output) == [str(tmp_path / "modprobe.d"),
                                                 str(tmp_path / "modprobe.d" / "conf.d")]


def test_grouped_path_probe_counts_missing_directories_as_the_single_probe_does(
        tmp_path: Path) -> None:
    paths = [str(tmp_path / "a" / "b" / "c.conf"), str(tmp_path / "d.conf")]

    grouped = split_paths_output(run_sh(probe_paths(paths)).stdout, paths)

    assert grouped == {path: run_sh(probe_path(path)).stdout for path in paths}
    assert grouped[paths[0]] == "absent 2\n"


def test_directories_above_a_path_are_listed_shallowest_first_without_the_root() -> None:
    assert directories_above("/etc/systemd/coredump.conf.d/90.conf") == [
        "/etc", "/etc/systemd", "/etc/systemd/coredump.conf.d"]
    assert directories_above("/motd") == []


def test_missing_directories_of_a_present_or_plainly_absent_path_are_none() -> None:
    assert missing_directories("/etc/a/b", "absent\n") == []
    assert missing_directories("/etc/a/b", probe_output(b"x\n")) == []


def awkward_tree(root: Path) -> list[Path]:
    """Every kind of path a file step can meet, including names that break naive parsing."""
    (root / "plain.conf").write_bytes(b"a = 1\n")
    (root / "empty.conf").write_bytes(b"")
    (root / "dir").mkdir()
    (root / "link-to-file").symlink_to(root / "plain.conf")
    (root / "dangling").symlink_to(root / "nowhere")
    os.mkfifo(root / "fifo")
    for name in ("a|b.conf", "new\nline.conf", "back\\slash.conf", "two  spaces", "-dash"):
        (root / name).write_bytes(name.encode())
    return [*sorted(root.iterdir()), root / "missing"]


def test_grouped_path_probe_reads_every_path_as_its_own_probe_does(tmp_path: Path) -> None:
    paths = [str(path) for path in awkward_tree(tmp_path)]

    grouped = split_paths_output(run_sh(probe_paths(paths)).stdout, paths)

    assert {path: parse_path_state(grouped[path]) for path in paths} == {
        path: parse_path_state(run_sh(probe_path(path)).stdout) for path in paths}


def test_grouped_path_probe_of_only_missing_paths_reports_them_absent(tmp_path: Path) -> None:
    paths = [str(tmp_path / "one"), str(tmp_path / "two")]

    grouped = split_paths_output(run_sh(probe_paths(paths)).stdout, paths)

    assert grouped == dict.fromkeys(paths, "absent\n")


def test_grouped_path_probe_performs_no_write() -> None:
    assert not WRITES.search(probe_paths(["/etc/ssh/sshd_config", "/etc/issue"]))


def test_file_steps_share_the_paths_group_unless_they_need_the_content() -> None:
    host = make_host()
    plain = ensure_file(host, "/etc/a", "x\n")
    line = ensure_line(host, "/etc/b", "x")

    assert plain.grouped is not None and plain.grouped.item == "/etc/a"
    assert line.grouped is None


@pytest.mark.parametrize("with_content", [False, True], ids=["checksum", "with-content"])
def test_probe_path_performs_no_write(with_content: bool) -> None:
    assert not WRITES.search(probe_path("/etc/ssh/sshd_config", with_content))


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


# --- write_file_action: the text --------------------------------------------------------------


def test_write_file_action_validates_the_temp_file_in_the_target_directory() -> None:
    action = write_file_action(DesiredFile("/etc/ssh/sshd_config", NEW, validate="sshd -t -f %s"))

    assert "tmp=$(mktemp /etc/ssh/.provisioner-XXXXXX)" in action
    assert 'out=$(sshd -t -f "$tmp" 2>&1)' in action


def test_write_file_action_keeps_a_backup_of_the_old_file() -> None:
    action = write_file_action(DesiredFile("/etc/ssh/sshd_config", NEW))

    assert ("cp -p /etc/ssh/sshd_config /var/backups/provisioner/etc/ssh/sshd_config."
            in action)


def test_write_file_action_quotes_a_path_with_spaces() -> None:
    action = write_file_action(DesiredFile("/etc/my app/conf", NEW))

    assert f'mv -f "$tmp" {quote("/etc/my app/conf")}' in action


# --- write_file_action: run for real ----------------------------------------------------------


@pytest.fixture
def backups(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point the backup root into tmp_path so a real run writes nothing outside it."""
    root = tmp_path / "backups"
    monkeypatch.setattr(files, "BACKUP_ROOT", str(root))
    return root


def leftovers(directory: Path) -> list[str]:
    return sorted(entry.name for entry in directory.iterdir() if ".provisioner-" in entry.name)


def write_for_real(path: Path, content: bytes, mode: int = 0o600,
                   validate: str | None = None) -> subprocess.CompletedProcess[str]:
    desired = DesiredFile(str(path), content, USER, GROUP, mode, validate)
    return run_sh(write_file_action(desired))


def test_write_creates_the_file_with_content_and_mode(tmp_path: Path, backups: Path) -> None:
    target = tmp_path / "app.conf"

    completed = write_for_real(target, b"a = 1\n", mode=0o640)

    assert completed.returncode == 0, completed.stderr
    assert target.read_bytes() == b"a = 1\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert leftovers(tmp_path) == []


def test_write_replaces_the_file_by_rename_not_in_place(tmp_path: Path, backups: Path) -> None:
    target = tmp_path / "app.conf"
    target.write_bytes(b"old\n")
    with target.open("rb") as reader:
        old_inode = os.fstat(reader.fileno()).st_ino

        completed = write_for_real(target, b"new\n")

        assert completed.returncode == 0, completed.stderr
        assert reader.read() == b"old\n"
    assert (target.read_bytes(), target.stat().st_ino != old_inode) == (b"new\n", True)


def test_write_copies_the_old_file_to_the_backup_root(tmp_path: Path, backups: Path) -> None:
    target = tmp_path / "app.conf"
    target.write_bytes(b"old\n")

    write_for_real(target, b"new\n")

    copies = list((backups / str(tmp_path).lstrip("/")).glob("app.conf.*"))
    assert [copy.read_bytes() for copy in copies] == [b"old\n"]


def test_write_writes_binary_content_exactly(tmp_path: Path, backups: Path) -> None:
    target = tmp_path / "blob"
    data = bytes(range(256)) + b"'\"$(x)`\n"

    write_for_real(target, data)

    assert target.read_bytes() == data


def test_validator_sees_the_new_content_at_the_temp_path(tmp_path: Path, backups: Path) -> None:
    target = tmp_path / "app.conf"

    completed = write_for_real(target, b"valid\n", validate="grep -qx valid %s")

    assert completed.returncode == 0, completed.stderr
    assert target.read_bytes() == b"valid\n"


def test_failing_validator_leaves_the_old_file_and_no_temp_file(
        tmp_path: Path, backups: Path) -> None:
    target = tmp_path / "app.conf"
    target.write_bytes(b"old\n")
    target.chmod(0o644)

    completed = write_for_real(target, b"broken\n", validate="false %s")

    assert completed.returncode == 1
    assert "validation failed (false %s)" in completed.stderr
    assert (target.read_bytes(), stat.S_IMODE(target.stat().st_mode)) == (b"old\n", 0o644)
    assert leftovers(tmp_path) == []


def test_failing_validator_makes_no_backup(tmp_path: Path, backups: Path) -> None:
    target = tmp_path / "app.conf"
    target.write_bytes(b"old\n")

    write_for_real(target, b"broken\n", validate="false %s")

    assert not backups.exists()


def test_failing_validator_on_a_new_file_creates_nothing(tmp_path: Path, backups: Path) -> None:
    completed = write_for_real(tmp_path / "app.conf", b"broken\n", validate="false %s")

    assert completed.returncode == 1
    assert list(tmp_path.iterdir()) == []


def test_failure_message_does_not_execute_the_validate_command_text(
        tmp_path: Path, backups: Path) -> None:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    target = tmp_path / "etc" / "jail.local"
    target.parent.mkdir()
    validate = f"sh -c 'd=$(mktemp -d {scratch}/v.XXXXXX) && rmdir \"$d\"; exit 1' check %s"

    completed = write_for_real(target, b"[sshd]\n", validate=validate)

    assert completed.returncode == 1
    assert list(scratch.iterdir()) == []


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="creates root-owned directories")


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@needs_root
def test_write_creates_missing_directories_root_owned_0755_whatever_the_umask(
        tmp_path: Path, backups: Path) -> None:
    target = tmp_path / "modprobe.d" / "conf.d" / "blocked.conf"

    completed = run_sh("umask 077; " + write_file_action(
        DesiredFile(str(target), b"install dccp /bin/true\n", "root", "root", 0o644)))

    assert completed.returncode == 0, completed.stderr
    assert target.read_bytes() == b"install dccp /bin/true\n"
    for directory in (target.parent.parent, target.parent):
        assert (directory.owner(), directory.group(), mode_of(directory)) == (
            "root", "root", 0o755)


@needs_root
def test_write_creates_missing_directories_with_the_mode_the_step_asks_for(
        tmp_path: Path, backups: Path) -> None:
    target = tmp_path / "private.d" / "key.conf"

    completed = run_sh(write_file_action(
        DesiredFile(str(target), b"k\n", mode=0o600, directory_mode=0o700)))

    assert completed.returncode == 0, completed.stderr
    assert mode_of(target.parent) == 0o700


@needs_root
def test_failing_validator_removes_exactly_the_directories_the_write_created(
        tmp_path: Path, backups: Path) -> None:
    (tmp_path / "existing").mkdir()
    target = tmp_path / "existing" / "new" / "deeper" / "jail.local"

    completed = write_for_real(target, b"broken\n", validate="false %s")

    assert completed.returncode == 1
    assert [path.name for path in tmp_path.iterdir()] == ["existing"]
    assert list((tmp_path / "existing").iterdir()) == []


def test_backup_of_a_private_file_stays_private_in_a_0700_tree(
        tmp_path: Path, backups: Path) -> None:
    target = tmp_path / "shadow"
    target.write_bytes(b"root:*:19000::::::\n")
    target.chmod(0o600)

    write_for_real(target, b"root:!:19000::::::\n", mode=0o600)

    copies = list(backups.rglob("shadow.*"))
    assert [mode_of(copy) for copy in copies] == [0o600]
    tree = [backups, *[parent for parent in copies[0].parents if backups in parent.parents]]
    assert {mode_of(directory) for directory in tree} == {0o700}


def test_backup_tightens_a_tree_an_older_run_left_world_readable(
        tmp_path: Path, backups: Path) -> None:
    target = tmp_path / "app.conf"
    target.write_bytes(b"old\n")
    target.chmod(0o644)
    old_tree = backups / str(tmp_path).lstrip("/")
    old_tree.mkdir(parents=True, mode=0o755)
    for directory in (backups, *old_tree.parents):
        if backups in (directory, *directory.parents):
            directory.chmod(0o755)

    write_for_real(target, b"new\n", mode=0o644)

    copy = next(old_tree.glob("app.conf.*"))
    assert mode_of(copy) == 0o644
    assert {mode_of(directory) for directory in (backups, *copy.parents)
            if backups in (directory, *directory.parents)} == {0o700}


def test_a_write_whose_backup_fails_leaves_the_old_file(tmp_path: Path, backups: Path) -> None:
    backups.write_text("not a directory\n")
    target = tmp_path / "app.conf"
    target.write_bytes(b"old\n")

    completed = write_for_real(target, b"new\n")

    assert completed.returncode == 1
    assert "could not back up" in completed.stderr
    assert target.read_bytes() == b"old\n"
    assert leftovers(tmp_path) == []


def test_backup_command_copies_a_file_a_filter_is_about_to_replace(
        tmp_path: Path, backups: Path) -> None:
    target = tmp_path / "moduli"
    target.write_bytes(b"primes\n")
    target.chmod(0o600)

    completed = run_sh("set -e\n" + backup_command(str(target)) + "\necho done")

    assert (completed.returncode, completed.stdout) == (0, "done\n")
    copies = list(backups.rglob("moduli.*"))
    assert [(copy.read_bytes(), mode_of(copy)) for copy in copies] == [(b"primes\n", 0o600)]


def test_backup_command_does_nothing_for_a_missing_file(tmp_path: Path, backups: Path) -> None:
    completed = run_sh(backup_command(str(tmp_path / "missing")))

    assert completed.returncode == 0
    assert not backups.exists()


def test_removed_file_is_kept_with_its_mode_in_a_0700_tree(
        tmp_path: Path, backups: Path) -> None:
    target = tmp_path / "old.conf"
    target.write_bytes(b"secret\n")
    target.chmod(0o600)
    step = ensure_absent(make_host(), str(target))

    completed = run_sh(step.decide(Probed(run_sh(step.probe).stdout)).action or "")

    assert completed.returncode == 0, completed.stderr
    copy = next(backups.rglob("old.conf.*"))
    assert (target.exists(), mode_of(copy), mode_of(copy.parent), mode_of(backups)) == (
        False, 0o600, 0o700, 0o700)


@pytest.fixture
def safeguard_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "safeguard"
    monkeypatch.setattr(files, "SAFEGUARD_ROOT", str(root))
    return root


def test_safeguard_save_keeps_the_copy_private_in_a_0700_tree(
        tmp_path: Path, safeguard_root: Path) -> None:
    target = tmp_path / "sshd_config"
    target.write_bytes(b"PermitRootLogin yes\n")
    target.chmod(0o600)
    (safeguard_root / "sshd").mkdir(parents=True)
    (safeguard_root / "sshd" / "manifest").write_text("")
    safeguard_root.chmod(0o755)

    completed = run_sh(safeguard_save("sshd", str(target)))

    saved = safeguard_root / "sshd" / "files" / str(target).lstrip("/")
    assert completed.returncode == 0, completed.stderr
    assert (saved.read_bytes(), mode_of(saved)) == (b"PermitRootLogin yes\n", 0o600)
    assert {mode_of(directory) for directory in saved.parents
            if safeguard_root in (directory, *directory.parents)} == {0o700}
    assert (safeguard_root / "sshd" / "manifest").read_text() == f"saved {target}\n"


def test_a_failed_safeguard_save_stops_the_guarded_change(
        tmp_path: Path, safeguard_root: Path) -> None:
    target = tmp_path / "sshd_config"
    target.write_bytes(b"PermitRootLogin yes\n")
    safeguard_root.mkdir()
    (safeguard_root / "sshd").write_text("a file where the safeguard's directory should be\n")

    completed = run_sh(safeguard_save("sshd", str(target)) + f"echo changed > {quote(str(target))}")

    assert completed.returncode == 1
    assert "could not save" in completed.stderr
    assert target.read_bytes() == b"PermitRootLogin yes\n"


# --- Steps built by ensure_* ------------------------------------------------------------------


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
    host.template_dir = tmp_path

    step = files.ensure_template(host, "/etc/motd", "motd.j2")

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


# --- plan_line --------------------------------------------------------------------------------

PRL = "^#?PermitRootLogin"


@pytest.mark.parametrize(
    ("text", "line", "pattern", "expected"),
    [
        (None, "a = 1", None, "a = 1\n"),
        ("", "a = 1", None, "a = 1\n"),
        ("x = 0\n", "a = 1", None, "x = 0\na = 1\n"),
        ("x = 0", "a = 1", None, "x = 0\na = 1\n"),
        ("a = 1\nx = 0\n", "a = 1", None, None),
        ("PermitRootLogin yes\n", "PermitRootLogin no", PRL, "PermitRootLogin no\n"),
        ("Port 22\n#PermitRootLogin prohibit-password\nX11Forwarding no\n",
         "PermitRootLogin no", PRL, "Port 22\nPermitRootLogin no\nX11Forwarding no\n"),
        ("#PermitRootLogin yes\nPort 22\nPermitRootLogin yes\nUsePAM yes\n",
         "PermitRootLogin no", PRL, "Port 22\nPermitRootLogin no\nUsePAM yes\n"),
        ("PermitRootLogin no\nPermitRootLogin no\n", "PermitRootLogin no", PRL,
         "PermitRootLogin no\n"),
        ("Port 22\n", "PermitRootLogin no", PRL, "Port 22\nPermitRootLogin no\n"),
        ("Port 22\nPermitRootLogin no\n", "PermitRootLogin no", PRL, None),
    ],
    ids=["no-file", "empty-file", "append", "append-after-unterminated-line", "already-there",
         "replace-the-match", "replace-commented-default", "collapse-duplicates-at-last-match",
         "collapse-identical-duplicates", "append-when-nothing-matches", "pattern-satisfied"],
)
def test_plan_line(text: str | None, line: str, pattern: str | None,
                   expected: str | None) -> None:
    assert plan_line(text, line, pattern) == expected


@pytest.mark.parametrize(
    ("text", "line", "pattern"),
    [
        (None, "a = 1", None),
        ("x = 0\n", "a = 1", None),
        ("#PermitRootLogin yes\nPort 22\nPermitRootLogin yes\n", "PermitRootLogin no", PRL),
        ("Port 22\n", "PermitRootLogin no", PRL),
    ],
    ids=["create", "append", "collapse", "append-with-pattern"],
)
def test_plan_line_second_application_changes_nothing(
        text: str | None, line: str, pattern: str | None) -> None:
    once = plan_line(text, line, pattern)

    assert plan_line(once, line, pattern) is None


def test_ensure_line_rewrites_the_file_keeping_its_owner_and_mode() -> None:
    step = ensure_line(make_host(), "/etc/ssh/sshd_config", "PermitRootLogin no", pattern=PRL)
    current = b"Port 22\nPermitRootLogin yes\n"
    encoded = base64.b64encode(current).decode()
    output = f"regular file|root|ssh|600|{sha(current)}\ncontent:{encoded}"

    plan = step.decide(Probed(output))

    assert plan.reason == "line set"
    assert plan.action == write_file_action(DesiredFile(
        "/etc/ssh/sshd_config", b"Port 22\nPermitRootLogin no\n", "root", "ssh", 0o600))
    assert plan.diff is not None
    assert "-PermitRootLogin yes\n+PermitRootLogin no\n" in plan.diff


def test_ensure_line_creates_a_missing_file_with_the_given_mode() -> None:
    step = ensure_line(make_host(), "/etc/issue.net", "Authorized use only", mode=0o640)

    plan = step.decide(Probed("absent\n"))

    assert plan.reason == "line added"
    assert plan.action == write_file_action(
        DesiredFile("/etc/issue.net", b"Authorized use only\n", mode=0o640))


def test_ensure_line_does_nothing_when_the_line_is_present() -> None:
    step = ensure_line(make_host(), "/etc/issue.net", "Authorized use only")
    current = b"Authorized use only\n"

    plan = step.decide(Probed(probe_output(current, with_content=True)))

    assert (plan.reason, plan.action) == ("line already present", None)


def test_ensure_line_probe_is_read_only() -> None:
    step = ensure_line(make_host(), "/etc/issue.net", "Authorized use only")

    assert not WRITES.search(step.probe)


def test_ensure_line_refuses_a_path_that_is_a_directory() -> None:
    step = ensure_line(make_host(), "/etc/sysctl.d", "vm.swappiness = 10")

    plan = step.decide(Probed("directory|root|root|755|\n"))

    assert "directory" in plan.reason
    assert "mv -f" not in (plan.action or "")
