"""Path probes: recorded output parsed, and the single and grouped probes run on real paths."""

from __future__ import annotations

import base64
import hashlib
import os
import re
import subprocess
from pathlib import Path

import pytest

from provisioner.ops.path_state import (
    FileState,
    directories_above,
    missing_directories,
    parse_path_state,
    probe_path,
    probe_paths,
    split_paths_output,
)
from tests.unit.fakes import LOCAL_GROUP as GROUP
from tests.unit.fakes import LOCAL_USER as USER

WRITES = re.compile(r">|\b(mv|rm|cp|chmod|chown|mkdir|touch|tee|sed|truncate|install)\b")


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


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


@pytest.mark.parametrize("with_content", [False, True], ids=["checksum", "with-content"])
def test_probe_path_performs_no_write(with_content: bool) -> None:
    assert not WRITES.search(probe_path("/etc/ssh/sshd_config", with_content))
