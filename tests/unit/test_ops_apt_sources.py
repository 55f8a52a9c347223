"""apt sources: entries read in both formats, a mirror found, a source kept if apt can use it."""

from __future__ import annotations

import hashlib

import pytest

from provisioner.ops.apt_sources import (
    AptEntry,
    archive_keyring,
    main_mirror,
    parse_apt_entries,
    plan_source_file,
    probe_sources,
    read_sources,
    remove_source_action,
    render_deb822_source,
    source_mode,
)
from provisioner.ops.file_writes import DesiredFile
from provisioner.ops.path_state import FileState
from tests.unit.test_ops_path_state import WRITES, run_sh

OWN = "/etc/apt/sources.list.d/vendor.sources"
SOURCE = b"Types: deb\nURIs: https://apt.example.org\nSuites: stable\n"


def test_one_line_entries_are_read_without_their_options() -> None:
    entries = parse_apt_entries([
        "deb [arch=amd64 signed-by=/usr/share/keyrings/k.gpg] http://m.example/debian "
        "bookworm main contrib",
        "deb\thttp://m.example/debian bookworm-updates main  # a comment",
    ])

    assert entries == [AptEntry(["http://m.example/debian"], ["bookworm"], ["main", "contrib"]),
                       AptEntry(["http://m.example/debian"], ["bookworm-updates"], ["main"])]


def test_deb822_stanzas_are_told_apart_by_a_field_seen_twice() -> None:
    entries = parse_apt_entries([
        "URIs: http://m.example/debian", "Suites: bookworm bookworm-updates",
        "Components: main", "URIs: http://m.example/debian-security",
        "Suites: bookworm-security"])

    assert entries == [
        AptEntry(["http://m.example/debian"], ["bookworm", "bookworm-updates"], ["main"]),
        AptEntry(["http://m.example/debian-security"], ["bookworm-security"], [])]


@pytest.mark.parametrize("line", ["deb-src http://m.example/debian bookworm main",
                                  "# deb http://m.example/debian bookworm main",
                                  "deb http://m.example/debian", "Types: deb"])
def test_lines_that_name_no_binary_entry_are_ignored(line: str) -> None:
    assert parse_apt_entries([line]) == []


def test_the_main_mirror_is_the_first_web_entry_serving_the_release() -> None:
    entries = [AptEntry(["cdrom:[Debian 12]/"], ["bookworm"], ["main"]),
               AptEntry(["http://m.example/debian-security"], ["bookworm"], ["main"]),
               AptEntry(["http://m.example/ubuntu"], ["jammy"], ["main"]),
               AptEntry(["https://m.example/debian/"], ["bookworm"], ["main", "contrib"])]

    assert main_mirror(entries, "bookworm") == AptEntry(
        ["https://m.example/debian"], ["bookworm"], ["main", "contrib"])
    assert main_mirror(entries, "trixie") is None


@pytest.mark.parametrize(("os_id", "keyring"), [
    ("debian", "/usr/share/keyrings/debian-archive-keyring.gpg"),
    ("ubuntu", "/usr/share/keyrings/ubuntu-archive-keyring.gpg"),
    ("raspbian", "/usr/share/keyrings/debian-archive-keyring.gpg"),
])
def test_each_distribution_signs_with_its_archive_keyring(os_id: str, keyring: str) -> None:
    assert archive_keyring(os_id) == keyring


def test_a_deb822_source_is_one_stanza_under_its_comment() -> None:
    text = render_deb822_source("https://apt.example.org", ["stable"], [], "/etc/apt/k.gpg",
                                "Managed by provisioner")

    assert text == ("# Managed by provisioner\nTypes: deb\nURIs: https://apt.example.org\n"
                    "Suites: stable\nComponents: main\nSigned-By: /etc/apt/k.gpg\n")


@pytest.mark.parametrize(("uri", "mode"), [
    ("https://bob:pw@apt.example.org/debian", 0o600),
    ("https://token@apt.example.org/debian", 0o600),
    ("https://apt.example.org/debian", 0o644),
    ("https://apt.example.org/people/@me", 0o644),
])
def test_a_source_with_credentials_is_for_root_alone(uri: str, mode: int) -> None:
    assert source_mode(uri) == mode


def test_the_probe_reads_the_other_sources_then_the_own_file() -> None:
    output = "URIs: http://m.example/debian\nSuites: bookworm\n--- ours\nabsent\n"

    assert read_sources(output) == ([AptEntry(["http://m.example/debian"], ["bookworm"], [])],
                                    None)


def test_the_probe_runs_read_only_on_this_machine() -> None:
    probe = probe_sources(OWN, with_content=True)
    done = run_sh(probe)

    assert not WRITES.search(probe)
    assert (done.returncode, read_sources(done.stdout)[1]) == (0, None)


def test_a_new_source_goes_live_only_if_apt_fetches_every_source() -> None:
    plan = plan_source_file(None, DesiredFile(OWN, SOURCE))
    action = plan.action or ""

    assert plan.reason == "created"
    assert f"update --error-on=any; then rm -f {OWN};" in action
    assert "echo 'apt could not use the source" in action and action.endswith("exit 1; fi")


def test_a_source_as_desired_changes_nothing() -> None:
    current = FileState("regular file", "root", "root", 0o644, hashlib.sha256(SOURCE).hexdigest())

    assert plan_source_file(current, DesiredFile(OWN, SOURCE)).action is None


def test_a_removed_source_refreshes_the_lists_without_it() -> None:
    action = remove_source_action(OWN)

    assert action.startswith(f"rm -f {OWN} && (") and action.endswith("update")


@pytest.mark.parametrize("switch", ["Types: deb-src", "Enabled: no", "enabled: false"])
def test_a_stanza_apt_fetches_no_packages_from_is_not_a_source(switch: str) -> None:
    second = ([switch] if switch.startswith("Types") else ["Types: deb", switch])
    entries = parse_apt_entries([
        "Types: deb", "URIs: http://m.example/debian", "Suites: bookworm", "",
        *second, "URIs: http://m.example/debian-security", "Suites: bookworm-security"])

    assert [entry.suites for entry in entries] == [["bookworm"]]
