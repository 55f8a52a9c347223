"""Human output: a line per step and a summary table; the run never prints, it tells a Listener.

A log (stdout not a terminal) gets each step once, when it is done, and lines as long as they
are: a line wrapped at 80 columns, or a diff split across lines, is what a log must not do. A
terminal also gets a live line at the bottom naming the action under way (and for how long, on
a slow one such as apt), replaced by the step's line when it is done.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import IO, Any, cast

from rich.console import Console
from rich.control import strip_control_codes
from rich.table import Table
from rich.text import Text

from provisioner.change import Change
from provisioner.output.run_report import profile_lines
from provisioner.run.results import HostResult, RunResult

_STYLES = {"ok": "green", "changed": "yellow", "failed": "bold red", "refused": "bold red"}


_PAINTS = (*_STYLES.values(), "dim", "bold", "cyan")


#: On a terminal, a pending action's live line shows its time once it has run this long.
SHOW_ELAPSED_AFTER = 2.0


_CLEAR_LINE = "\r\x1b[2K"


class OutputThatMayClose:
    """stdout that may go away mid-run (``provision ... | head``): writing to a closed pipe
    must not end the run between a guarded change and its proof, so output stops instead."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self.closed_by_reader = False

    def write(self, text: str) -> int:
        if not self.closed_by_reader:
            try:
                return int(self._stream.write(text))
            except BrokenPipeError:
                self._went_away()
        return len(text)

    def flush(self) -> None:
        if not self.closed_by_reader:
            try:
                self._stream.flush()
            except BrokenPipeError:
                self._went_away()

    def isatty(self) -> bool:
        return bool(self._stream.isatty())

    def fileno(self) -> int:
        return int(self._stream.fileno())

    def _went_away(self) -> None:
        self.closed_by_reader = True
        # Python's own flush of stdout at exit must not complain about the pipe either.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, self._stream.fileno())
        os.close(devnull)


def default_console() -> Console:
    """stdout; off a terminal nothing wraps (rich would wrap at 80 columns, or $COLUMNS)."""
    output = cast(IO[str], OutputThatMayClose(sys.stdout))
    console = Console(highlight=False, soft_wrap=True, file=output)
    if not console.is_terminal:
        console.width = 10_000
    return console


class ConsoleReport:
    """Listener printing one line per step; colour only on a terminal (rich honours NO_COLOR)."""

    def __init__(self, console: Console | None = None, show_diff: bool = False,
                 check: bool = False) -> None:
        self.console = console or default_console()
        self.show_diff = show_diff
        self.check = check
        self.live = self.console.is_terminal
        self._lock = threading.Lock()
        self._paint = {style: _ansi_codes(self.console, style) for style in _PAINTS}
        #: (host, step label) -> when its action started, for the live line.
        self._pending: dict[tuple[str, str], float] = {}
        self._live_shown = False
        self._stop_ticking = threading.Event()
        self._ticker: threading.Thread | None = None

    def host_started(self, host: str) -> None:
        mode = " (check mode: nothing will be changed)" if self.check else ""
        self._write(self._painted("bold", f"{host}: connecting{mode}") + "\n")

    def action_started(self, host: str, label: str) -> None:
        """Only a terminal hears of it: a log gets the step once, when its outcome is known."""
        if not self.live:
            return
        with self._lock:
            self._pending[(host, label)] = time.monotonic()
            self._draw_live_line()
        self._start_ticker()

    def action_progress(self, host: str, label: str, text: str) -> None:
        """What a running action says of itself (a wait for the dpkg lock), as it says it: a
        line in a log as on a terminal, where the live line then follows it."""
        start, end = self._paint["yellow"]
        dim_start, dim_end = self._paint["dim"]
        self._write(strip_control_codes(f"{host}  {start}{'waiting':<8}{end} {label}  "
                                        f"{dim_start}({text}){dim_end}") + "\n")

    def step_finished(self, host: str, change: Change) -> None:
        """One line, written straight to the console's file: a no-op on five hosts prints over
        a hundred of these, and rich's full render costs 0.1 ms a line, as much as the rest of
        a host's share of the run's own work. The colours still come from rich (_ansi_codes)."""
        start, end = self._paint[_STYLES[change.status]]
        dim_start, dim_end = self._paint["dim"]
        text = strip_control_codes(f"{host}  {start}{change.status:<8}{end} {change.label}  "
                                   f"{dim_start}({change.reason}){dim_end}") + "\n"
        if self.show_diff and change.diff:
            text += "".join(self._painted("cyan", line) + "\n"
                            for line in change.diff.rstrip("\n").splitlines())
        self._write(text, done=(host, change.label))

    def host_finished(self, result: HostResult) -> None:
        text = ""
        if result.error:
            text = self._painted("bold red", f"{result.name}  failed   {result.error}") + "\n"
        elif result.skipped:
            text = self._painted("yellow", f"{result.name}  skipped  {result.skipped}") + "\n"
        with self._lock:
            for key in [key for key in self._pending if key[0] == result.name]:
                del self._pending[key]
        self._write(text)

    def summary(self, run: RunResult) -> None:
        self.close()
        table = Table(title="check run: what would change" if run.check else "summary")
        for column in ("host", "ok", "changed", "failed", "round trips", "seconds"):
            table.add_column(column, justify="left" if column == "host" else "right")
        for result in run.hosts.values():
            failed = result.count("failed") + result.count("refused") + (1 if result.error else 0)
            name = f"{result.name} (skipped)" if result.skipped else result.name
            table.add_row(name, str(result.count("ok")), str(result.count("changed")),
                          Text(str(failed), style="bold red" if failed else ""),
                          str(result.round_trips), f"{result.duration:.2f}")
        with self._lock:
            self.console.print(table)

    def profile(self, run: RunResult, count: int = 10) -> None:
        """``--profile``: the slowest steps, then where each host's time went."""
        self._write("".join(line + "\n" for line in profile_lines(run, count)))

    def close(self) -> None:
        """Stop the live line's clock and take the line away (the summary comes next)."""
        self._stop_ticking.set()
        if self._ticker is not None:
            self._ticker.join()
            self._ticker = None
        with self._lock:
            self._pending.clear()
            self._clear_live_line()
            self.console.file.flush()

    def _write(self, text: str, done: tuple[str, str] | None = None) -> None:
        """Lines above the live line: take it away, write, draw it again for what is pending."""
        with self._lock:
            if done is not None:
                self._pending.pop(done, None)
            self._clear_live_line()
            self.console.file.write(text)
            self._draw_live_line()
            self.console.file.flush()

    def _painted(self, style: str, text: str) -> str:
        start, end = self._paint[style]
        return start + strip_control_codes(text) + end

    def _draw_live_line(self) -> None:
        if not self._pending:
            return
        self._clear_live_line()
        self.console.file.write(self._painted("dim", live_line(
            self._pending, time.monotonic(), self.console.width - 1)))
        self.console.file.flush()
        self._live_shown = True

    def _clear_live_line(self) -> None:
        if self._live_shown:
            self.console.file.write(_CLEAR_LINE)
            self._live_shown = False

    def _start_ticker(self) -> None:
        """A clock for the live line, so a slow step (apt) shows it is still going."""
        if self._ticker is not None or self._stop_ticking.is_set():
            return
        self._ticker = threading.Thread(target=self._tick, name="live-line", daemon=True)
        self._ticker.start()

    def _tick(self) -> None:
        while not self._stop_ticking.wait(1.0):
            with self._lock:
                self._draw_live_line()


def live_line(pending: dict[tuple[str, str], float], now: float, width: int) -> str:
    """The oldest action under way (with its time once it is slow) and how many more are."""
    (host, label), started = min(pending.items(), key=lambda item: item[1])
    elapsed = now - started
    text = f"{host}  ...      {label}"
    if elapsed >= SHOW_ELAPSED_AFTER:
        text += f"  ({elapsed:.0f} s)"
    if len(pending) > 1:
        text += f"  (+{len(pending) - 1} more under way)"
    return text if len(text) <= width else text[:max(width - 3, 0)] + "..."


def _ansi_codes(console: Console, style: str) -> tuple[str, str]:
    """What rich writes before and after a text in this style on this console: escape codes on a
    colour terminal, nothing on a pipe or under NO_COLOR."""
    with console.capture() as captured:
        console.print(Text("\0", style=style), end="")
    start, _, end = captured.get().partition("\0")
    return start, end
