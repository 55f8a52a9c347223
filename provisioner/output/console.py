"""Human output: a line per step and a summary table; the run never prints, it tells a Listener.

A log (stdout not a terminal) gets each step once, when it is done, and lines as long as they
are: a line wrapped at 80 columns, or a diff split across lines, is what a log must not do. A
terminal also gets a live line at the bottom naming the action under way (and for how long, on
a slow one such as apt), replaced by the step's line when it is done.

rich is imported only for a terminal (colours, its table): a log has no colours and gets the
same table drawn by plain_table, and importing and starting rich costs about 25 ms, a tenth of
a converged host's whole run.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Sequence
from typing import IO, TYPE_CHECKING, Any, cast

from provisioner.change import Change
from provisioner.output.control_codes import strip_control_codes
from provisioner.output.run_report import profile_lines
from provisioner.run.results import HostResult, RunResult

if TYPE_CHECKING:
    from rich.console import Console

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


class LogConsole:
    """What a log needs of a console: its file, no colours, and lines that never wrap."""

    is_terminal = False
    width = 10_000

    def __init__(self, file: IO[str]) -> None:
        self.file = file


#: Variables under which rich treats a file that is not a terminal as one (colours in a pipe).
_RICH_TERMINAL_VARIABLES = ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE")


def default_console() -> Console | LogConsole:
    """stdout; off a terminal nothing wraps (rich would wrap at 80 columns, or $COLUMNS)."""
    output = cast(IO[str], OutputThatMayClose(sys.stdout))
    if not output.isatty() and not any(name in os.environ for name in _RICH_TERMINAL_VARIABLES):
        return LogConsole(output)
    from rich.console import Console  # a terminal's: see the module's docstring

    console = Console(highlight=False, soft_wrap=True, emoji=False, file=output)
    if not console.is_terminal:
        console.width = 10_000
    return console


class ConsoleReport:
    """Listener printing one line per step; colour only on a terminal (rich honours NO_COLOR)."""

    def __init__(self, console: Console | LogConsole | None = None, show_diff: bool = False,
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
        title = "check run: what would change" if run.check else "summary"
        rows = [(f"{result.name} (skipped)" if result.skipped else result.name,
                 str(result.count("ok")), str(result.count("changed")),
                 str(result.count("failed") + result.count("refused") + (1 if result.error else 0)),
                 str(result.round_trips), f"{result.duration:.2f}")
                for result in run.hosts.values()]
        if isinstance(self.console, LogConsole):
            self._write(plain_table(title, SUMMARY_COLUMNS, rows))
            return
        from rich.table import Table
        from rich.text import Text

        table = Table(title=title)
        for column in SUMMARY_COLUMNS:
            table.add_column(column, justify="left" if column == "host" else "right")
        for row in rows:
            table.add_row(*row[:3], Text(row[3], style="bold red" if row[3] != "0" else ""),
                          *row[4:])
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


SUMMARY_COLUMNS = ("host", "ok", "changed", "failed", "round trips", "seconds")


def plain_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """The summary as rich draws it in a log (its default box, the first column left-aligned,
    the others right-aligned, nothing wrapped), without rich."""
    widths = [max(len(cell) for cell in (name, *(row[index] for row in rows)))
              for index, name in enumerate(columns)]

    def rule(left: str, fill: str, cross: str, right: str) -> str:
        return left + cross.join(fill * (width + 2) for width in widths) + right

    def cells(values: Sequence[str], bar: str) -> str:
        return bar + bar.join(f" {value.ljust(width) if index == 0 else value.rjust(width)} "
                              for index, (value, width) in enumerate(zip(values, widths,
                                                                         strict=True))) + bar

    lines = [title, rule("┏", "━", "┳", "┓"), cells(columns, "┃"), rule("┡", "━", "╇", "┩"),
             *(cells(row, "│") for row in rows), rule("└", "─", "┴", "┘")]
    return "\n".join(lines) + "\n"


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


def _ansi_codes(console: Console | LogConsole, style: str) -> tuple[str, str]:
    """What rich writes before and after a text in this style on this console: escape codes on a
    colour terminal, nothing on a pipe or under NO_COLOR (nor in a log)."""
    if isinstance(console, LogConsole):
        return "", ""
    from rich.text import Text

    with console.capture() as captured:
        console.print(Text("\0", style=style), end="")
    start, _, end = captured.get().partition("\0")
    return start, end
