"""The JSON report, --profile, the console (a log and a terminal) and `invoke facts` output."""

from __future__ import annotations

import io
import json
import os
import re
import stat
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
from rich.console import Console
from rich.text import Text

from provisioner.change import Change
from provisioner.facts import Disk
from provisioner.output.console import ConsoleReport, OutputThatMayClose, live_line
from provisioner.output.facts_table import facts_data, facts_table
from provisioner.output.run_report import profile_lines, report_data, slowest_steps, write_report
from provisioner.run.results import HostResult, RunResult
from tests.unit.fakes import DEBIAN12_FACTS


def sample_run() -> RunResult:
    web = HostResult("web1", [replace(Change.ok("packages nginx", "all present"), duration=0.25),
                              replace(Change.made("file /etc/a", "content changed"),
                                      duration=1.5)], round_trips=2, duration=2.0,
                     connection="reused")
    db = HostResult("db1", [replace(Change.failure("service postgresql", "failed to start"),
                                    duration=0.5)], round_trips=3, duration=1.0)
    return RunResult({"web1": web, "db1": db})


def test_report_counts_each_hosts_outcomes_and_names_the_steps() -> None:
    web = report_data(sample_run())["hosts"]["web1"]

    assert (web["ok"], web["changed"], web["failed"]) == (1, 1, 0)
    assert (web["changed_steps"], web["failed_steps"]) == (["file /etc/a"], [])


def test_report_gives_every_steps_duration() -> None:
    steps = report_data(sample_run())["hosts"]["web1"]["steps"]

    assert [(step["label"], step["duration_seconds"]) for step in steps] == [
        ("packages nginx", 0.25), ("file /etc/a", 1.5)]


def test_report_says_whether_each_host_reused_a_kept_login() -> None:
    data = report_data(sample_run())

    assert (data["hosts"]["web1"]["connection"], data["hosts"]["db1"]["connection"]) == (
        "reused", None)


def test_report_gives_round_trips_per_host_and_for_the_run() -> None:
    data = report_data(sample_run())

    assert (data["hosts"]["web1"]["round_trips"], data["hosts"]["db1"]["round_trips"],
            data["round_trips"]) == (2, 3, 5)


def test_report_exit_code_is_1_when_a_host_failed() -> None:
    assert report_data(sample_run())["exit_code"] == 1


def test_written_report_is_the_same_json(tmp_path: Path) -> None:
    path = tmp_path / "report.json"

    write_report(sample_run(), path)

    assert json.loads(path.read_text()) == report_data(sample_run())


def test_profile_lists_the_slowest_steps_first() -> None:
    slowest = [(host, change.label) for host, change in slowest_steps(sample_run(), count=2)]

    assert slowest == [("web1", "file /etc/a"), ("db1", "service postgresql")]


# --- the console --------------------------------------------------------------------------------


def printed(*events: Callable[[ConsoleReport], None], show_diff: bool = False,
            check: bool = False) -> str:
    """What the console report prints for these events (plain text, no colour)."""
    output = io.StringIO()
    report = ConsoleReport(Console(file=output, width=200, no_color=True, highlight=False),
                           show_diff=show_diff, check=check)
    for event in events:
        event(report)
    return output.getvalue()


def test_console_prints_each_step_with_its_status_and_reason_in_order() -> None:
    text = printed(lambda r: r.host_started("web1"),
                   lambda r: r.step_finished("web1", Change.ok("packages nginx", "all present")),
                   lambda r: r.step_finished("web1", Change.made("file /etc/a", "created")))

    assert text.splitlines() == ["web1: connecting", "web1  ok       packages nginx  (all present)",
                                 "web1  changed  file /etc/a  (created)"]


def test_step_lines_on_a_colour_terminal_carry_the_colours_rich_gives_them() -> None:
    output = io.StringIO()
    console = Console(file=output, width=200, force_terminal=True, color_system="standard",
                      highlight=False)
    ConsoleReport(console).step_finished("web1", Change.made("file /etc/a", "created"))

    expected = io.StringIO()
    reference = Console(file=expected, width=200, force_terminal=True, color_system="standard")
    reference.print(Text("changed ", style="yellow"), end="")
    assert output.getvalue().startswith("web1  " + expected.getvalue() + " file /etc/a")


def test_step_lines_drop_control_characters_a_host_may_have_sent() -> None:
    text = printed(lambda r: r.step_finished("web1", Change.ok("apt", "lists\r\x07 fresh")))

    assert text == "web1  ok       apt  (lists fresh)\n"


def test_console_says_when_nothing_will_be_changed() -> None:
    assert "check mode: nothing will be changed" in printed(lambda r: r.host_started("web1"),
                                                             check=True)


def test_console_prints_diffs_only_when_asked() -> None:
    change = Change.made("file /etc/a", "content changed", "-old\n+new\n")

    assert "+new" in printed(lambda r: r.step_finished("web1", change), show_diff=True)
    assert "+new" not in printed(lambda r: r.step_finished("web1", change))


def test_console_summary_has_a_row_per_host_with_round_trips() -> None:
    text = printed(lambda r: r.summary(sample_run()))
    cells = [[cell.strip() for cell in line.split("│")[1:-1]] for line in text.splitlines()
             if "web1" in line or "db1" in line]

    assert [(row[0], row[4]) for row in cells] == [("web1", "2"), ("db1", "3")]


def test_console_names_a_host_that_failed_before_any_step() -> None:
    result = HostResult("db1", error="Cannot reach db1 at 10.0.0.9:22")

    assert "db1  failed   Cannot reach db1" in printed(lambda r: r.host_finished(result))


def test_console_names_a_host_a_serial_run_never_started_and_why() -> None:
    result = HostResult("web2", skipped="not started: web1 failed in an earlier batch")

    assert "web2  skipped  not started: web1 failed" in printed(lambda r: r.host_finished(result))


def test_a_refused_step_counts_as_failed_in_the_summary_and_the_report() -> None:
    result = HostResult("web1", [Change.refusal("security source", "no main mirror")])
    run = RunResult({"web1": result})
    row = next(line for line in printed(lambda r: r.summary(run)).splitlines() if "web1" in line)

    assert [cell.strip() for cell in row.split("│")[1:-1]][3] == "1"
    assert report_data(run)["hosts"]["web1"]["failed"] == 1
    assert report_data(run)["hosts"]["web1"]["steps"][0]["status"] == "refused"


def test_report_says_why_a_host_was_skipped() -> None:
    run = RunResult({"web2": HostResult("web2", skipped="not started: web1 failed")})

    assert report_data(run)["hosts"]["web2"]["skipped"] == "not started: web1 failed"
    assert report_data(run)["exit_code"] == 1


def test_written_report_is_readable_by_its_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "report.json"

    write_report(sample_run(), path)

    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_report_written_over_a_readable_file_makes_it_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "report.json"
    path.write_text("old")
    path.chmod(0o644)

    write_report(sample_run(), path)

    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_text()) == report_data(sample_run())


# --- a log: each step once, nothing wrapped ----------------------------------------------------

LONG_LABEL = "file /etc/" + "very-long-directory-name/" * 6 + "settings.conf"


def logged(monkeypatch: pytest.MonkeyPatch, *events: Callable[[ConsoleReport], None],
           show_diff: bool = False) -> str:
    """What the console report writes when stdout is a file or a pipe (a log)."""
    output = io.StringIO()
    monkeypatch.setattr(sys, "stdout", output)
    monkeypatch.setenv("COLUMNS", "80")
    report = ConsoleReport(show_diff=show_diff)
    for event in events:
        event(report)
    report.close()
    return output.getvalue()


def test_a_log_gets_each_step_once_not_also_when_its_action_starts(
        monkeypatch: pytest.MonkeyPatch) -> None:
    text = logged(monkeypatch, lambda r: r.action_started("web1", "packages nginx"),
                  lambda r: r.step_finished("web1", Change.made("packages nginx", "installed")))

    assert text == "web1  changed  packages nginx  (installed)\n"


def test_a_log_gets_long_step_lines_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    text = logged(monkeypatch, lambda r: r.step_finished("web1", Change.ok(LONG_LABEL, "same")))

    assert text.splitlines() == [f"web1  ok       {LONG_LABEL}  (same)"]


def test_a_log_gets_diff_lines_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    diff = f"--- {LONG_LABEL}\n+++ {LONG_LABEL}\n-" + "x" * 120 + "\n+" + "y" * 120 + "\n"

    text = logged(monkeypatch, lambda r: r.step_finished(
        "web1", Change.made("file /etc/a", "content changed", diff)), show_diff=True)

    assert text.splitlines()[1:] == diff.splitlines()


def test_a_log_gets_a_long_host_error_on_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    error = "Cannot reach web1 at 203.0.113.10:22: " + "timed out after 10 s; " * 8

    text = logged(monkeypatch, lambda r: r.host_finished(HostResult("web1", error=error)))

    assert text == f"web1  failed   {error}\n"


def test_a_logs_summary_keeps_long_host_names_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    name = "web1.frankfurt.production.example.org-with-a-very-long-name"
    run = RunResult({name: HostResult(name, [Change.ok("a", "b")], round_trips=1)})

    assert name in logged(monkeypatch, lambda r: r.summary(run))


# --- a terminal: a live line for the action under way -------------------------------------------


def on_terminal(*events: Callable[[ConsoleReport], None], width: int = 100) -> str:
    """What a terminal shows after these events: each line as left once the live line was
    overwritten (carriage return and erase-line honoured), colours removed."""
    output = io.StringIO()
    report = ConsoleReport(Console(file=output, width=width, force_terminal=True,
                                   color_system="standard", highlight=False))
    for event in events:
        event(report)
    shown = output.getvalue()
    report.close()
    return re.sub(r"\x1b\[[0-9;]*m", "", shown).replace("\r\x1b[2K", "\r")


def visible(screen: str) -> list[str]:
    return [line.rsplit("\r", 1)[-1] for line in screen.split("\n")]


def test_a_terminal_shows_the_action_under_way_on_a_live_line() -> None:
    screen = on_terminal(lambda r: r.action_started("web1", "packages nginx"))

    assert visible(screen) == ["web1  ...      packages nginx"]


def test_a_terminal_replaces_the_live_line_with_the_steps_outcome() -> None:
    screen = on_terminal(lambda r: r.action_started("web1", "packages nginx"),
                         lambda r: r.step_finished("web1", Change.made("packages nginx", "new")))

    assert visible(screen) == ["web1  changed  packages nginx  (new)", ""]


def test_a_terminal_keeps_the_live_line_below_other_hosts_lines() -> None:
    screen = on_terminal(lambda r: r.action_started("web1", "packages nginx"),
                         lambda r: r.step_finished("db1", Change.ok("file /etc/a", "same")))

    assert visible(screen) == ["db1  ok       file /etc/a  (same)", "web1  ...      packages nginx"]


def test_live_line_shows_the_time_of_a_long_action() -> None:
    assert live_line({("web1", "packages nginx"): 100.0}, 112.4, 80) == (
        "web1  ...      packages nginx  (12 s)")


def test_live_line_shows_the_oldest_action_and_how_many_more_are_under_way() -> None:
    pending = {("web2", "file /etc/a"): 101.0, ("web1", "packages nginx"): 100.0}

    assert live_line(pending, 100.5, 80) == "web1  ...      packages nginx  (+1 more under way)"


def test_live_line_fits_the_terminal() -> None:
    line = live_line({("web1", LONG_LABEL): 0.0}, 0.0, 40)

    assert (len(line), line.endswith("...")) == (40, True)


# --- --profile -----------------------------------------------------------------------------------


def test_profile_gives_each_hosts_time_and_round_trips() -> None:
    lines = profile_lines(sample_run())

    assert "    2.000 s  web1  2 round trip(s), 2 steps, 1.750 s of it in steps" in lines


def test_profile_in_check_mode_says_a_steps_time_is_only_its_deciding() -> None:
    lines = profile_lines(replace(sample_run(), check=True))

    assert lines[-1].startswith("check mode: steps send no action, so a step's time is only its "
                                "deciding")


def test_profile_outside_check_mode_does_not_speak_of_check_mode() -> None:
    assert not any("check mode" in line for line in profile_lines(sample_run()))


# --- invoke facts --------------------------------------------------------------------------------

FACTS = replace(DEBIAN12_FACTS, disks=(Disk("vda", 20 << 30, False), Disk("sdb", 4 << 40, True)),
                apt_sources=("deb https://user:pa55@mirror.example.org/debian bookworm main",))


def test_facts_table_is_aligned_and_readable() -> None:
    assert facts_table("web1", FACTS).splitlines() == [
        "web1",
        "  OS              Debian 12 (bookworm)",
        "  kernel          6.1.0-28-amd64 (amd64)",
        "  CPUs            2",
        "  RAM             2.0 GiB",
        "  disks           vda 20.0 GiB, sdb 4.0 TiB rotational",
        "  virtualization  kvm",
        "  init            systemd",
        "  firmware        BIOS",
        "  OpenSSH         9.2",
        "  hostname        web1",
    ]


def test_facts_table_says_when_openssh_is_not_installed() -> None:
    assert "  OpenSSH         not installed" in facts_table(
        "web1", replace(FACTS, openssh_version=None)).splitlines()


def test_facts_json_has_every_fact_in_plain_numbers() -> None:
    data = json.loads(json.dumps(facts_data(FACTS)))

    assert (data["memory_bytes"], data["disks"][0], data["openssh_version"]) == (
        2 << 30, {"name": "vda", "size_bytes": 20 << 30, "rotational": False}, [9, 2])


def test_facts_json_masks_credentials_in_apt_source_urls() -> None:
    assert facts_data(FACTS)["apt_sources"] == [
        "deb https://***@mirror.example.org/debian bookworm main"]


def test_output_whose_reader_went_away_stops_quietly_instead_of_ending_the_run() -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)
    with os.fdopen(write_end, "w") as stream:
        output = OutputThatMayClose(stream)
        assert output.write("web1  changed  sshd_config\n") > 0
        output.flush()
        assert output.closed_by_reader
        output.write("more\n")
        output.flush()
