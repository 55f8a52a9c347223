"""Change and unified diffs: headers, summaries for binary and large content, secrets redacted."""

from __future__ import annotations

import pytest

from provisioner.change import MAX_DIFF_BYTES, Change, unified_diff
from provisioner.secrets.redaction import redact
from provisioner.secrets.values import Secret


def test_diff_of_a_new_file_is_against_dev_null() -> None:
    assert unified_diff("/etc/motd", None, b"hello\n") == (
        "--- /dev/null\n+++ /etc/motd (desired)\n@@ -0,0 +1 @@\n+hello\n")


def test_diff_of_a_changed_file_names_current_and_desired() -> None:
    assert unified_diff("/etc/motd", b"a\nb\n", b"a\nc\n") == (
        "--- /etc/motd (current)\n+++ /etc/motd (desired)\n@@ -1,2 +1,2 @@\n a\n-b\n+c\n")


def test_diff_of_identical_content_is_empty() -> None:
    assert unified_diff("/etc/motd", b"same\n", b"same\n") == ""


def test_diff_lines_without_final_newline_still_end_in_one() -> None:
    diff = unified_diff("/etc/motd", b"old", b"new")

    assert diff.endswith("-old\n\\ No newline at end of file\n+new\n"
                         "\\ No newline at end of file\n")


@pytest.mark.parametrize(("before", "after"), [(b"\xff\xfe\x00", b"text\n"),
                                               (b"text\n", b"\x89PNG\r\n\x1a\n\xff")],
                         ids=["binary-before", "binary-after"])
def test_binary_content_is_summarised(before: bytes, after: bytes) -> None:
    assert unified_diff("/usr/share/x", before, after) == (
        "--- /usr/share/x\n+++ /usr/share/x\n(binary content, not shown)\n")


@pytest.mark.parametrize(("before", "after"),
                         [(b"x" * (MAX_DIFF_BYTES + 1), b"small\n"),
                          (None, b"y\n" * (MAX_DIFF_BYTES // 2 + 1))],
                         ids=["large-before", "large-after"])
def test_content_larger_than_256_kib_is_summarised(before: bytes | None, after: bytes) -> None:
    assert unified_diff("/var/big", before, after) == (
        "--- /var/big\n+++ /var/big\n(content larger than 256 KiB, not shown)\n")


def test_content_of_exactly_256_kib_is_still_diffed() -> None:
    diff = unified_diff("/var/big", None, b"z" * (MAX_DIFF_BYTES - 1) + b"\n")

    assert diff.startswith("--- /dev/null\n+++ /var/big (desired)\n")


def test_redacted_diff_hides_a_secret_rendered_into_the_file() -> None:
    diff = unified_diff("/etc/app.conf", b"password = old\n", b"password = hunter2\n")

    assert redact(diff, [Secret("hunter2")]) == (
        "--- /etc/app.conf (current)\n+++ /etc/app.conf (desired)\n@@ -1 +1 @@\n"
        "-password = old\n+password = ***\n")


def test_redacted_diff_hides_a_multi_line_secret() -> None:
    key = "-----BEGIN KEY-----\nAAAA\nBBBB\n-----END KEY-----"
    diff = unified_diff("/etc/ssl/private/app.key", None, (key + "\n").encode())

    assert "AAAA" not in redact(diff, [Secret(key)])


def test_content_with_nul_bytes_is_summarised_as_binary() -> None:
    assert "(binary content, not shown)" in unified_diff("/var/lib/x.db", None, b"\x00\x01\x02")


def test_diff_marks_a_missing_final_newline() -> None:
    assert "\\ No newline at end of file" in unified_diff("/etc/motd", b"a", b"a\n")


@pytest.mark.parametrize(
    ("change", "status"),
    [
        (Change.ok("file /etc/motd", "already as desired"), "ok"),
        (Change.made("file /etc/motd", "created", "--- diff"), "changed"),
        (Change.failure("file /etc/motd", "exit 1"), "failed"),
    ],
    ids=["ok", "changed", "failed"],
)
def test_change_status(change: Change, status: str) -> None:
    assert change.status == status


def test_failed_change_is_not_reported_as_changed() -> None:
    assert Change.failure("x", "exit 1").changed is False
