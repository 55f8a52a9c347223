"""The batch wire format, proven by running the built scripts with a real ``sh -s``."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest

from provisioner.commands import quote
from provisioner.run.batch import ActionResult, BatchResult, build_batch, parse_batch
from provisioner.step import GroupedProbe, Probed, ProbeGroup


def run_batch(probes: Sequence[str | GroupedProbe],
              action: str | Sequence[str] | None = None) -> BatchResult:
    """Build a script, feed it to sh on stdin as the connection does, and parse its stdout."""
    script = build_batch(probes, action)
    completed = subprocess.run(["sh", "-s"], input=script.text, capture_output=True, text=True,
                               timeout=30, check=False)
    assert completed.returncode == 0, completed.stderr
    return parse_batch(script, completed.stdout)


def printf(text: str) -> str:
    return f"printf '%s' {quote(text)}"


@pytest.mark.parametrize(
    "text",
    ["line\n", "no trailing newline", "", "\n", "two\nlines\n", "blank\n\nin between\n",
     "trailing blanks\n\n\n", "  spaces and\ttabs  "],
    ids=["newline", "no-newline", "empty", "only-newline", "two-lines", "inner-blank",
         "trailing-blanks", "whitespace"],
)
def test_probe_output_is_returned_exactly(text: str) -> None:
    result = run_batch([printf(text)])

    assert result.probes == [Probed(text, 0)]


def test_each_probe_reports_its_own_exit_code() -> None:
    result = run_batch(["true", "false", "exit 3", "echo out; exit 7"])

    assert [probe.exit_code for probe in result.probes] == [0, 1, 3, 7]


def test_probe_that_calls_exit_does_not_end_the_others() -> None:
    result = run_batch(["echo first; exit 4; echo never", "echo second"])

    assert result.probes == [Probed("first\n", 4), Probed("second\n", 0)]


def test_probe_stderr_is_discarded() -> None:
    result = run_batch(["echo visible; echo hidden >&2"])

    assert result.probes == [Probed("visible\n", 0)]


def test_probe_reads_nothing_from_stdin_so_the_script_survives() -> None:
    result = run_batch(["cat", "echo still here"])

    assert result.probes == [Probed("", 0), Probed("still here\n", 0)]


def test_probe_ending_in_a_comment_does_not_swallow_its_marker() -> None:
    result = run_batch(["echo one # a comment", "echo two"])

    assert result.probes == [Probed("one\n", 0), Probed("two\n", 0)]


def test_probe_with_a_case_statement_keeps_its_parentheses_balanced() -> None:
    result = run_batch(["case sda in loop*|ram*) echo skipped;; *) echo disk;; esac", "echo next"])

    assert result.probes == [Probed("disk\n", 0), Probed("next\n", 0)]


def test_probe_cannot_forge_a_section_with_a_marker_of_another_token() -> None:
    forged = "\nPROVISIONER-0123456789abcdef 1 0\nforged second probe\n"

    result = run_batch([printf(forged), "echo real second"])

    assert result.probes == [Probed(forged, 0), Probed("real second\n", 0)]


def test_every_script_gets_a_new_token() -> None:
    assert build_batch(["true"]).token != build_batch(["true"]).token


def test_script_without_action_reports_no_action() -> None:
    result = run_batch(["echo probed"])

    assert (result.action_exit_code, result.action_output) == (None, "")


def test_action_runs_before_the_probes(tmp_path: Path) -> None:
    marker = tmp_path / "marker"

    result = run_batch([f"cat {quote(str(marker))}"], action=f"echo acted > {quote(str(marker))}")

    assert result.action_exit_code == 0
    assert result.probes == [Probed("acted\n", 0)]


def test_action_output_includes_its_stderr() -> None:
    result = run_batch([], action="echo to-stdout; echo to-stderr >&2")

    assert result.action_output == "to-stdout\nto-stderr\n"


def test_failing_action_reports_its_exit_code_and_stops_the_probes(tmp_path: Path) -> None:
    witness = tmp_path / "probe-ran"

    result = run_batch([f"touch {quote(str(witness))}", "echo probed"],
                       action="echo trying; exit 5")

    assert (result.action_exit_code, result.action_output) == (5, "trying\n")
    assert result.probes == []
    assert not witness.exists()


def test_action_that_calls_exit_zero_still_lets_the_probes_run() -> None:
    result = run_batch(["echo probed"], action="exit 0; echo never")

    assert result.action_exit_code == 0
    assert result.probes == [Probed("probed\n", 0)]


def test_several_actions_run_in_order_before_the_probes(tmp_path: Path) -> None:
    log = quote(str(tmp_path / "log"))

    result = run_batch([f"cat {log}"], [f"echo one >> {log}", f"echo two >> {log}; echo done"])

    assert result.actions == [ActionResult(0, ""), ActionResult(0, "done\n")]
    assert result.probes == [Probed("one\ntwo\n", 0)]


def test_a_failing_action_stops_the_actions_after_it_and_the_probes(tmp_path: Path) -> None:
    witness = tmp_path / "third-ran"

    result = run_batch(["echo probed"], ["true", "echo broken; exit 3",
                                         f"touch {quote(str(witness))}"])

    assert result.actions == [ActionResult(0, ""), ActionResult(3, "broken\n")]
    assert (result.action_exit_code, result.probes, witness.exists()) == (3, [], False)


def test_parse_of_truncated_output_returns_only_the_complete_sections() -> None:
    script = build_batch(["echo a", "echo b"])
    output = f"a\n\n{script.token} 0 0\nb\n"

    result = parse_batch(script, output)

    assert result.probes == [Probed("a\n", 0)]


# --- grouped probes ---------------------------------------------------------------------------


def echo_items(items: Sequence[str]) -> str:
    """One snippet printing 'item=seen' per item, like a real group answering many at once."""
    return "; ".join(f"echo {quote(item + '=seen')}" for item in items)


def split_echo(output: str, items: Sequence[str]) -> dict[str, str]:
    seen = dict(line.split("=", 1) for line in output.splitlines())
    return {item: f"{seen[item]}\n" for item in items if item in seen}


ECHO = ProbeGroup("echo", echo_items, split_echo)


def test_grouped_probes_come_back_in_probe_order_among_plain_ones() -> None:
    probes = [GroupedProbe(ECHO, "a"), "echo plain", GroupedProbe(ECHO, "b"),
              GroupedProbe(ECHO, "a")]

    result = run_batch(probes)

    assert result.probes == [Probed("seen\n", 0), Probed("plain\n", 0), Probed("seen\n", 0),
                             Probed("seen\n", 0)]


def test_a_group_runs_one_snippet_for_all_its_items() -> None:
    script = build_batch([GroupedProbe(ECHO, name) for name in "abc"])

    assert script.text.count("echo a=seen; echo b=seen; echo c=seen") == 1


def test_an_item_its_group_did_not_answer_ends_the_results_there() -> None:
    quiet = ProbeGroup("quiet", lambda items: "true", lambda output, items: {})

    result = run_batch(["echo first", GroupedProbe(quiet, "x"), "echo after"])

    assert result.probes == [Probed("first\n", 0)]
