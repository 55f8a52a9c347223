"""Backups and safeguard saves, run for real: copies keep their mode inside root-only trees."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from provisioner.commands import quote
from provisioner.ops import backups as backup_tree
from provisioner.ops.backups import backup_command, move_to_backups_command, safeguard_save
from tests.unit.test_ops_path_state import run_sh


@pytest.fixture
def backup_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point the backup root into tmp_path so a real run writes nothing outside it."""
    root = tmp_path / "backups"
    monkeypatch.setattr(backup_tree, "BACKUP_ROOT", str(root))
    return root


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_backup_of_a_private_file_stays_private_in_a_0700_tree(
        tmp_path: Path, backup_root: Path) -> None:
    target = tmp_path / "shadow"
    target.write_bytes(b"root:*:19000::::::\n")
    target.chmod(0o600)

    run_sh(backup_command(str(target)))

    copies = list(backup_root.rglob("shadow.*"))
    assert [mode_of(copy) for copy in copies] == [0o600]
    tree = [backup_root,
            *[parent for parent in copies[0].parents if backup_root in parent.parents]]
    assert {mode_of(directory) for directory in tree} == {0o700}


def test_backup_tightens_a_tree_an_older_run_left_world_readable(
        tmp_path: Path, backup_root: Path) -> None:
    target = tmp_path / "app.conf"
    target.write_bytes(b"old\n")
    target.chmod(0o644)
    old_tree = backup_root / str(tmp_path).lstrip("/")
    old_tree.mkdir(parents=True, mode=0o755)
    for directory in (backup_root, *old_tree.parents):
        if backup_root in (directory, *directory.parents):
            directory.chmod(0o755)

    run_sh(backup_command(str(target)))

    copy = next(old_tree.glob("app.conf.*"))
    assert mode_of(copy) == 0o644
    assert {mode_of(directory) for directory in (backup_root, *copy.parents)
            if backup_root in (directory, *directory.parents)} == {0o700}


def test_backup_command_copies_a_file_a_filter_is_about_to_replace(
        tmp_path: Path, backup_root: Path) -> None:
    target = tmp_path / "moduli"
    target.write_bytes(b"primes\n")
    target.chmod(0o600)

    completed = run_sh("set -e\n" + backup_command(str(target)) + "\necho done")

    assert (completed.returncode, completed.stdout) == (0, "done\n")
    copies = list(backup_root.rglob("moduli.*"))
    assert [(copy.read_bytes(), mode_of(copy)) for copy in copies] == [(b"primes\n", 0o600)]


def test_backup_command_does_nothing_for_a_missing_file(tmp_path: Path,
                                                       backup_root: Path) -> None:
    completed = run_sh(backup_command(str(tmp_path / "missing")))

    assert completed.returncode == 0
    assert not backup_root.exists()


def test_a_file_moved_to_the_backups_keeps_its_mode_in_a_0700_tree(
        tmp_path: Path, backup_root: Path) -> None:
    target = tmp_path / "old.conf"
    target.write_bytes(b"secret\n")
    target.chmod(0o600)

    completed = run_sh(move_to_backups_command(str(target)))

    assert completed.returncode == 0, completed.stderr
    copy = next(backup_root.rglob("old.conf.*"))
    assert (target.exists(), mode_of(copy), mode_of(copy.parent), mode_of(backup_root)) == (
        False, 0o600, 0o700, 0o700)


@pytest.fixture
def safeguard_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "safeguard"
    monkeypatch.setattr(backup_tree, "SAFEGUARD_ROOT", str(root))
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


def test_only_the_newest_copies_of_a_path_are_kept(tmp_path: Path, backup_root: Path) -> None:
    """An old copy of an environment file holds a secret a rotation replaced: copies beyond
    the newest KEEP_COPIES go."""
    target = tmp_path / "app.env"
    target.write_text("DATABASE_URL=new\n")
    directory = backup_root / str(tmp_path).lstrip("/")
    directory.mkdir(parents=True)
    for day in range(1, 9):
        (directory / f"app.env.202611{day:02d}T000000").write_text(f"old {day}\n")

    run_sh(backup_command(str(target)))

    kept = sorted(path.name for path in directory.glob("app.env.*"))
    assert len(kept) == backup_tree.KEEP_COPIES
    assert kept[:-1] == [f"app.env.202611{day:02d}T000000" for day in range(5, 9)]
    assert (directory / kept[-1]).read_text() == "DATABASE_URL=new\n"
