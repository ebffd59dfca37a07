"""Drawing a run's progress (`labpipe.progress_events.RunState`) for a person: plain lines, one per
event, off a terminal (CI, a log file, a pipe); a live view of the steps with `rich` on one.

Colour only on a terminal, never with NO_COLOR set. Both views are driven by one thread (the
reporter's, see `labpipe.progress`), never by the engine's: drawing costs the engine nothing.
"""

from __future__ import annotations

import os
import sys
import time
import zlib
from typing import Any, Protocol, TextIO

from .progress_events import RunState, StepState, describe, duration, first_line, summary

_MAX_NAME = 24  # names longer than this are not padded to (a plain line stays readable)
_LIVE_RUNNING_ROWS = 8  # running steps shown in the live view; the rest are counted
_PALETTE = ("cyan", "magenta", "green", "yellow", "blue", "bright_cyan", "bright_magenta", "bright_green")
_ANSI = {"completed": "32", "cached": "36", "failed": "31", "aborted": "31", "skipped": "33", "running": "34"}
_STYLE = {"completed": "green", "cached": "cyan", "failed": "bold red", "aborted": "red", "skipped": "yellow",
          "running": "blue", "queued": "dim", "pending": "dim"}
_MARK = {"completed": "✓", "cached": "↺", "failed": "✗", "aborted": "✗", "skipped": "-", "running": "▶", "queued": "…"}


def echo_raw(text: str, to_stdout: bool) -> None:
    """Write what a script printed to this process's stdout or stderr, as it is."""
    out = sys.stdout if to_stdout else sys.stderr
    try:
        out.write(text)
        out.flush()
    except (OSError, ValueError):  # a closed pipe must not break the wait
        pass



class View(Protocol):
    """What the reporter calls (from its own thread only)."""

    def started(self, run: RunState) -> None: ...
    def step(self, state: StepState, run: RunState) -> None: ...
    def output(self, step: str, line: str, run: RunState) -> None: ...
    def echo(self, text: str, to_stdout: bool) -> None: ...
    def refresh(self, run: RunState) -> None: ...
    def close(self, run: RunState) -> None: ...


def wants_color(stream: TextIO) -> bool:
    """Colour only on a terminal (or with FORCE_COLOR), and never with NO_COLOR set (https://no-color.org)."""
    if os.environ.get("NO_COLOR"):
        return False
    if os.environ.get("FORCE_COLOR"):
        return True
    return is_terminal(stream)


def is_terminal(stream: TextIO) -> bool:
    """A terminal a live view can redraw (not TERM=dumb)."""
    try:
        return bool(stream.isatty()) and os.environ.get("TERM") != "dumb"
    except (AttributeError, ValueError):  # closed, or not a real stream
        return False


def _unicode_ok(stream: TextIO) -> bool:
    return (getattr(stream, "encoding", None) or "").lower().replace("-", "") in ("utf8", "utf8sig")


def _pipeline_words(run: RunState) -> str:
    return "running" if run.ended is None else run.ended.status


def _why(run: RunState) -> str:
    """Why a run stopped (a failed one's causes were shown with its steps already)."""
    ended = run.ended
    return f": {first_line(ended.message)}" if ended and ended.status == "stopped" and ended.message else ""


class PlainLines:
    """One line per event: `load  done in 0.31 s`, `load | a line it printed`, `pipeline 'demo' completed in 7.2 s (...)`."""

    def __init__(self, stream: TextIO):
        self.stream = stream
        self.color = wants_color(stream)
        self.unicode = _unicode_ok(stream)
        self._width = 0

    def _write(self, text: str) -> None:
        try:
            self.stream.write(text + "\n")
            self.stream.flush()
        except (OSError, ValueError):  # a closed pipe or file must not break the run
            pass

    def _name(self, name: str) -> str:
        self._width = max(self._width, min(len(name), _MAX_NAME))
        return name.ljust(self._width)

    def started(self, run: RunState) -> None:
        self._write(f"pipeline {run.name!r} started (task {run.run_id})")

    def step(self, state: StepState, run: RunState) -> None:
        if state.status in ("pending", "queued"):
            self._name(state.name)  # declared: its name counts in the column's width before it prints
            return  # declared or waiting for a worker: nothing a person needs a line for
        words = describe(state, self.unicode)
        if self.color and state.status in _ANSI:
            words = f"\x1b[{_ANSI[state.status]}m{words}\x1b[0m"
        self._write(f"{self._name(state.name)}  {words}")

    def output(self, step: str, line: str, run: RunState) -> None:
        self._write(f"{self._name(step)} | {line}")

    def echo(self, text: str, to_stdout: bool) -> None:
        echo_raw(text, to_stdout)

    def refresh(self, run: RunState) -> None:
        pass

    def close(self, run: RunState) -> None:
        self._write(f"pipeline {run.name!r} {_pipeline_words(run)} in {duration(run.total())} ({summary(run)}){_why(run)}")


class LiveView:
    """A live view of the steps drawn with rich: running ones with their elapsed time, the last
    ones to finish, failures, counts for all, and the run's total time. What steps print, and each
    failure, is printed above it as it comes.

    force_terminal: draw even when `stream` is not a terminal (LABPIPE_PROGRESS=live; tests, benchmarks).
    """

    def __init__(self, stream: TextIO, force_terminal: bool = False):
        from rich.console import Console
        from rich.live import Live

        color = wants_color(stream)
        self.console = Console(file=stream, force_terminal=True if force_terminal or is_terminal(stream) else None,
                               color_system="auto" if color else None, no_color=not color, highlight=False,
                               emoji=False, markup=False)
        self.unicode = _unicode_ok(stream) or is_terminal(stream)
        self.live = Live(console=self.console, auto_refresh=False, transient=False, redirect_stdout=False,
                         redirect_stderr=False)
        self._started = False

    def started(self, run: RunState) -> None:
        from rich.text import Text

        self.console.print(Text(f"pipeline {run.name!r} started (task {run.run_id})", style="bold"))
        self.live.start(refresh=False)
        self._started = True

    def step(self, state: StepState, run: RunState) -> None:
        if state.status in ("failed", "aborted"):  # stays on screen after the run
            from rich.text import Text

            self.console.print(Text.assemble((state.name, "bold"), "  ", (describe(state, self.unicode), _STYLE[state.status])))

    def output(self, step: str, line: str, run: RunState) -> None:
        from rich.text import Text

        color = _PALETTE[zlib.crc32(step.encode()) % len(_PALETTE)]
        self.console.print(Text.assemble((step, color), (" | ", "dim"), line), soft_wrap=True)

    def echo(self, text: str, to_stdout: bool) -> None:
        """Script output: above the live view when it goes to the same terminal, else where it belongs."""
        same_terminal = is_terminal(sys.stdout) if to_stdout else True
        if not same_terminal:
            echo_raw(text, to_stdout)
            return
        from rich.text import Text

        self.console.print(Text(text.rstrip("\n")), soft_wrap=True)

    def refresh(self, run: RunState) -> None:
        if self._started:
            self.live.update(self.render(run), refresh=True)

    def close(self, run: RunState) -> None:
        if not self._started:
            return
        self.live.update(self.render(run), refresh=True)
        self.live.stop()

    def render(self, run: RunState) -> Any:
        """The view as a rich renderable: rows for running, failed and recently finished steps, then counts."""
        from rich.console import Group
        from rich.table import Table
        from rich.text import Text

        now = time.time()
        table = Table.grid(padding=(0, 2))
        table.add_column(no_wrap=True)
        table.add_column(no_wrap=True, max_width=_MAX_NAME + 8)
        table.add_column(no_wrap=True)
        table.add_column(no_wrap=True, justify="right")
        running = run.running()
        for state in running[:_LIVE_RUNNING_ROWS]:
            table.add_row(Text(_MARK[state.status], style=_STYLE[state.status]), state.name,
                          Text(state.status, style=_STYLE[state.status]), duration(state.elapsed(now)))
        if len(running) > _LIVE_RUNNING_ROWS:
            table.add_row("", Text(f"+ {len(running) - _LIVE_RUNNING_ROWS} more running", style="dim"), "", "")
        for name in reversed(run.recent):
            state = run.steps[name]
            detail = describe(state, self.unicode)
            if state.status == "completed":
                detail = "done"
            table.add_row(Text(_MARK.get(state.status, " "), style=_STYLE.get(state.status, "")), state.name,
                          Text(detail, style=_STYLE.get(state.status, ""), overflow="ellipsis"),
                          duration(state.elapsed(now)) if state.status == "completed" else "")
        footer = Text.assemble((f"pipeline {run.name!r} ", "bold"), (_pipeline_words(run), "bold"), "  ",
                               summary(run), "  ", (f"total {duration(run.total())}", "bold"), _why(run))
        return Group(table, footer)


def choose(stream: TextIO, mode: str) -> View:
    """The view for `stream`: mode 'live' or 'plain' forces one; anything else picks live on a terminal."""
    if mode == "plain":
        return PlainLines(stream)
    if mode == "live" or is_terminal(stream):
        return LiveView(stream, force_terminal=mode == "live")
    return PlainLines(stream)
