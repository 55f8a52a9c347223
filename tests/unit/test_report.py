"""The JSON report and --profile: what a script reading the report can rely on."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from rich.console import Console
from rich.text import Text

from provisioner.change import Change
from provisioner.engine import HostResult, RunResult
from provisioner.report import ConsoleReport, report_data, slowest_steps, write_report


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
