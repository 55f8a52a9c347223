"""The atomic, validated, backed-up write: its text, and run for real against temporary trees."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

from provisioner.commands import quote
from provisioner.ops import backups as backup_tree
from provisioner.ops.file_writes import DesiredFile, write_file_action
from tests.unit.test_ops_path_state import GROUP, USER, run_sh

# --- write_file_action: the text --------------------------------------------------------------


NEW = b"PermitRootLogin no\n"


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
def backup_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point the backup root into tmp_path so a real run writes nothing outside it."""
    root = tmp_path / "backups"
    monkeypatch.setattr(backup_tree, "BACKUP_ROOT", str(root))
    return root


def leftovers(directory: Path) -> list[str]:
    return sorted(entry.name for entry in directory.iterdir() if ".provisioner-" in entry.name)


def write_for_real(path: Path, content: bytes, mode: int = 0o600,
                   validate: str | None = None) -> subprocess.CompletedProcess[str]:
    desired = DesiredFile(str(path), content, USER, GROUP, mode, validate)
    return run_sh(write_file_action(desired))


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_write_creates_the_file_with_content_and_mode(tmp_path: Path, backup_root: Path) -> None:
    target = tmp_path / "app.conf"

    completed = write_for_real(target, b"a = 1\n", mode=0o640)

    assert completed.returncode == 0, completed.stderr
    assert target.read_bytes() == b"a = 1\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert leftovers(tmp_path) == []


def test_write_replaces_the_file_by_rename_not_in_place(tmp_path: Path, backup_root: Path) -> None:
    target = tmp_path / "app.conf"
    target.write_bytes(b"old\n")
    with target.open("rb") as reader:
        old_inode = os.fstat(reader.fileno()).st_ino

        completed = write_for_real(target, b"new\n")

        assert completed.returncode == 0, completed.stderr
        assert reader.read() == b"old\n"
    assert (target.read_bytes(), target.stat().st_ino != old_inode) == (b"new\n", True)


def test_write_copies_the_old_file_to_the_backup_root(tmp_path: Path, backup_root: Path) -> None:
    target = tmp_path / "app.conf"
    target.write_bytes(b"old\n")

    write_for_real(target, b"new\n")

    copies = list((backup_root / str(tmp_path).lstrip("/")).glob("app.conf.*"))
    assert [copy.read_bytes() for copy in copies] == [b"old\n"]


def test_write_writes_binary_content_exactly(tmp_path: Path, backup_root: Path) -> None:
    target = tmp_path / "blob"
    data = bytes(range(256)) + b"'\"$(x)`\n"

    write_for_real(target, data)

    assert target.read_bytes() == data


def test_validator_sees_the_new_content_at_the_temp_path(tmp_path: Path, backup_root: Path) -> None:
    target = tmp_path / "app.conf"

    completed = write_for_real(target, b"valid\n", validate="grep -qx valid %s")

    assert completed.returncode == 0, completed.stderr
    assert target.read_bytes() == b"valid\n"


def test_failing_validator_leaves_the_old_file_and_no_temp_file(
        tmp_path: Path, backup_root: Path) -> None:
    target = tmp_path / "app.conf"
    target.write_bytes(b"old\n")
    target.chmod(0o644)

    completed = write_for_real(target, b"broken\n", validate="false %s")

    assert completed.returncode == 1
    assert "validation failed (false %s)" in completed.stderr
    assert (target.read_bytes(), stat.S_IMODE(target.stat().st_mode)) == (b"old\n", 0o644)
    assert leftovers(tmp_path) == []


def test_failing_validator_makes_no_backup(tmp_path: Path, backup_root: Path) -> None:
    target = tmp_path / "app.conf"
    target.write_bytes(b"old\n")

    write_for_real(target, b"broken\n", validate="false %s")

    assert not backup_root.exists()


def test_failing_validator_on_a_new_file_creates_nothing(tmp_path: Path, backup_root: Path) -> None:
    completed = write_for_real(tmp_path / "app.conf", b"broken\n", validate="false %s")

    assert completed.returncode == 1
    assert list(tmp_path.iterdir()) == []


def test_failure_message_does_not_execute_the_validate_command_text(
        tmp_path: Path, backup_root: Path) -> None:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    target = tmp_path / "etc" / "jail.local"
    target.parent.mkdir()
    validate = f"sh -c 'd=$(mktemp -d {scratch}/v.XXXXXX) && rmdir \"$d\"; exit 1' check %s"

    completed = write_for_real(target, b"[sshd]\n", validate=validate)

    assert completed.returncode == 1
    assert list(scratch.iterdir()) == []


def test_a_write_whose_backup_fails_leaves_the_old_file(tmp_path: Path, backup_root: Path) -> None:
    backup_root.write_text("not a directory\n")
    target = tmp_path / "app.conf"
    target.write_bytes(b"old\n")

    completed = write_for_real(target, b"new\n")

    assert completed.returncode == 1
    assert "could not back up" in completed.stderr
    assert target.read_bytes() == b"old\n"
    assert leftovers(tmp_path) == []


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="creates root-owned directories")


@needs_root
def test_write_creates_missing_directories_root_owned_0755_whatever_the_umask(
        tmp_path: Path, backup_root: Path) -> None:
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
        tmp_path: Path, backup_root: Path) -> None:
    target = tmp_path / "private.d" / "key.conf"

    completed = run_sh(write_file_action(
        DesiredFile(str(target), b"k\n", mode=0o600, directory_mode=0o700)))

    assert completed.returncode == 0, completed.stderr
    assert mode_of(target.parent) == 0o700


@needs_root
def test_failing_validator_removes_exactly_the_directories_the_write_created(
        tmp_path: Path, backup_root: Path) -> None:
    (tmp_path / "existing").mkdir()
    target = tmp_path / "existing" / "new" / "deeper" / "jail.local"

    completed = write_for_real(target, b"broken\n", validate="false %s")

    assert completed.returncode == 1
    assert [path.name for path in tmp_path.iterdir()] == ["existing"]
    assert list((tmp_path / "existing").iterdir()) == []
