"""Lines in files: one line set by pattern, and keyed lines, decided on recorded probe output."""

from __future__ import annotations

import base64

import pytest

from provisioner.ops.file_writes import DesiredFile, write_file_action
from provisioner.ops.lines import ensure_keyed_lines, ensure_line, plan_keyed_lines, plan_line
from provisioner.step import Probed, ProbeUnreadable
from tests.unit.fakes import make_host
from tests.unit.test_ops_path_state import WRITES, probe_output, sha

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


# --- keyed lines ------------------------------------------------------------------------------

LOGIN_DEFS = "/etc/login.defs"


def test_keyed_lines_replace_active_keys_and_keep_commented_ones() -> None:
    text = "#PASS_MAX_DAYS 99999\nPASS_MAX_DAYS\t99999\nUMASK 022\n"
    new = plan_keyed_lines(text, {"PASS_MAX_DAYS": "PASS_MAX_DAYS\t60", "UMASK": "UMASK\t027"})
    assert new == "#PASS_MAX_DAYS 99999\nPASS_MAX_DAYS\t60\nUMASK\t027\n"
    assert plan_keyed_lines(new, {"UMASK": "UMASK\t027"}) is None


def test_a_key_is_its_own_before_blanks_an_equals_sign_or_the_end_only() -> None:
    text = "UMASK=022\nUMASKS 1\nUMASK\n"

    assert plan_keyed_lines(text, {"UMASK": "UMASK 027"}) == "UMASKS 1\nUMASK 027\n"


def test_a_key_the_file_lacks_is_appended() -> None:
    assert plan_keyed_lines("A 1\n", {"B": "B 2"}) == "A 1\nB 2\n"


def login_defs_output(text: bytes) -> str:
    return probe_output(text, with_content=True).replace("|root|root|644|", "|root|shadow|640|")


def test_ensure_keyed_lines_writes_once_keeping_owner_and_mode_and_names_the_keys() -> None:
    current = b"PASS_MAX_DAYS 99999\nUMASK 022\nENCRYPT_METHOD SHA512\n"
    step = ensure_keyed_lines(make_host(), LOGIN_DEFS, {
        "UMASK": "UMASK 027", "PASS_MAX_DAYS": "PASS_MAX_DAYS 60",
        "ENCRYPT_METHOD": "ENCRYPT_METHOD SHA512"})

    plan = step.decide(Probed(login_defs_output(current)))

    assert plan.reason == "set PASS_MAX_DAYS, UMASK"
    assert plan.action == write_file_action(DesiredFile(
        LOGIN_DEFS, b"PASS_MAX_DAYS 60\nUMASK 027\nENCRYPT_METHOD SHA512\n", "root", "shadow",
        0o640))


def test_ensure_keyed_lines_changes_nothing_when_every_value_is_set() -> None:
    step = ensure_keyed_lines(make_host(), LOGIN_DEFS, {"UMASK": "UMASK 027"})

    plan = step.decide(Probed(login_defs_output(b"UMASK 027\n")))

    assert (plan.reason, plan.action) == ("all values already set", None)


def test_ensure_keyed_lines_waits_for_a_missing_file_its_package_brings() -> None:
    step = ensure_keyed_lines(make_host(), LOGIN_DEFS, {"UMASK": "UMASK 027"})

    with pytest.raises(ProbeUnreadable, match="is its package installed"):
        step.decide(Probed("absent\n"))


def test_ensure_keyed_lines_probe_is_read_only() -> None:
    assert not WRITES.search(ensure_keyed_lines(make_host(), LOGIN_DEFS, {"A": "A 1"}).probe)
