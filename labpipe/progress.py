"""Live progress of a pipeline run, in every mode: what the person running it sees.

The engine (`pipeline/run.py`) emits an event each time a step changes state (`Reporter.step`: one
append to a deque, about a microsecond); a debug run's plain calls go through `call_step`; a caller
waiting on a run executed elsewhere (a services worker) gets the same events by polling the store
(`follow`). One thread per view drains the events at a bounded rate, streams what running steps print
(their console rows in the store, or a debug call's own prints), and draws (`labpipe.progress_view`):
a rich live view on a terminal, plain lines elsewhere, on stderr.

Settings: `quiet=True` (a pipeline's, `start_locally`'s, `start`'s, `follow`'s argument) or
LABPIPE_PROGRESS=0 shows nothing; LABPIPE_PROGRESS=plain or =live forces a view. Step output:
`stream_output=False` or LABPIPE_STEP_OUTPUT=0 leaves it out (it stays in the store either way; a
controller running under a worker leaves it out by default, its caller shows it).

One view at a time per process: a run started while another's view is live (a nested pipeline, a
parallel instance) shows through the outer one only.
"""

from __future__ import annotations

import atexit
import contextlib
import contextvars
import io
import logging
import os
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TextIO

from . import status as _status
from .progress_events import FINISHED, EchoEvent, OutputEvent, RunEnded, RunState, StepEvent
from .store import outputs
from .task_env import ENV_TASK_ID

log = logging.getLogger("labpipe")

ENV_PROGRESS = "LABPIPE_PROGRESS"
ENV_STEP_OUTPUT = "LABPIPE_STEP_OUTPUT"
_OFF = ("0", "off", "false", "no", "quiet", "none")

#: How often a view drains events and redraws (bounded: drawing never keeps pace with the engine).
PLAIN_INTERVAL = 0.1
LIVE_INTERVAL = 0.25


@dataclass(frozen=True)
class Settings:
    """What a run shows: mode 'off', 'auto' (live on a terminal, else plain), 'plain' or 'live';
    stream_output: whether steps' own output is shown, prefixed by their names."""

    mode: str
    stream_output: bool


def settings(quiet: bool = False, stream_output: bool | None = None) -> Settings:
    """The settings for a run from its arguments and the environment (either one can turn a thing off).

    quiet: show nothing. stream_output: None shows steps' output unless this process is itself a
    task under a worker (LABPIPE_TASK_ID: its own caller follows it and shows the output).
    """
    env = os.environ.get(ENV_PROGRESS, "").strip().lower()
    mode = "off" if quiet or env in _OFF else env if env in ("plain", "live") else "auto"
    env_out = os.environ.get(ENV_STEP_OUTPUT, "").strip().lower()
    if stream_output is None:
        stream_output = not os.environ.get(ENV_TASK_ID)
    return Settings(mode, bool(stream_output) and env_out not in _OFF)


class Reporter:
    """One run's progress: fed events from any thread, drawn by its own thread.

    Made by `open_run` (or `follow`); ended by `end(status, message)` (the pipeline task's ending:
    `pipeline_task.finish` calls `run_ended`), which draws the last frame before it returns.
    """

    def __init__(self, db: Any, run_id: str, name: str, view: Any, *, stream_output: bool, interval: float):
        self.db = db
        self.run_id = run_id
        self.state = RunState(name=name, run_id=run_id)
        self.view = view
        self.stream_output = stream_output
        self.interval = interval
        self._events: deque = deque()
        self._stop = threading.Event()
        self._steps_done = False
        self._seq: dict[str, int] = {}  # step task -> last console row shown
        self._partial: dict[str, str] = {}  # step -> an unterminated last line, kept until it ends
        self._debug_names: dict[str, int] = {}
        self._thread = threading.Thread(target=self._loop, name=f"labpipe-progress-{run_id[:8]}", daemon=True)

    # -- fed by the engine (any thread; cheap) ----------------------------------------------

    def step(self, name: str, status: str, task_id: str | None = None, started: float | None = None,
             completed: float | None = None, error: str | None = None) -> None:
        """A step changed state (see `StepEvent`)."""
        self._events.append(StepEvent(name, status, task_id, started, completed, error))

    def output(self, step: str, text: str) -> None:
        """A step printed `text` (a debug run's plain call; steps on workers are read from the store)."""
        self._events.append(OutputEvent(step, text))

    def echo(self, text: str, to_stdout: bool) -> None:
        """What a followed run's own script printed: shown as it is, above the view."""
        self._events.append(EchoEvent(text, to_stdout))

    def steps_done(self) -> None:
        """The run's scheduler ended: if nobody ends this reporter, it ends itself when the run's task does."""
        self._steps_done = True

    def end(self, status: str, message: str = "") -> None:
        """The run ended: draw the last frame (with the run's status and total time) and stop."""
        self._events.append(RunEnded(status, message))
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(10)

    @property
    def live(self) -> bool:
        """Still drawing a run whose steps are going on."""
        return self._thread.is_alive() and not self._steps_done and not self._stop.is_set()

    # -- a debug run's plain calls -----------------------------------------------------------

    def call(self, name: str, func: Callable, args: tuple, kwargs: dict) -> Any:
        """Call a component as a plain function (debug mode), reporting it as a step."""
        n = self._debug_names.get(name, 0)
        self._debug_names[name] = n + 1
        step = name if n == 0 else f"{name}_{n}"
        started = time.time()
        self.step(step, "running", started=started)
        redirect = self.stream_output and threading.current_thread() is threading.main_thread()
        saved = (sys.stdout, sys.stderr)
        if redirect:
            sys.stdout = sys.stderr = StepWriter(self, step)
        try:
            result = func(*args, **kwargs)
        except BaseException as exc:
            self.step(step, "failed", started=started, completed=time.time(), error=f"{type(exc).__name__}: {exc}")
            raise
        finally:
            if redirect:
                sys.stdout.flush()
                sys.stdout, sys.stderr = saved
        self.step(step, "completed", started=started, completed=time.time())
        return result

    # -- the drawing thread ---------------------------------------------------------------------

    def start(self) -> Reporter:
        self._thread.start()
        return self

    def _loop(self) -> None:
        try:
            self.view.started(self.state)
            while not self._stop.wait(self.interval):
                self._tick()
                if self._steps_done and self._ended_in_store():
                    break
            self._tick()
            if self.state.ended is None:
                self.state.ended, self.state.ended_at = RunEnded("ended"), time.time()
            self.view.close(self.state)
        except Exception:  # a broken terminal or a busy store must never break the run it shows
            log.debug("progress view of %s failed", self.run_id, exc_info=True)
        finally:
            with _lock:
                if _open.get(self.run_id) is self:
                    del _open[self.run_id]

    def _tick(self) -> None:
        events = self._events
        while events:
            event = events.popleft()
            if isinstance(event, StepEvent):
                if self.stream_output and event.status in FINISHED and event.status != "cached" and event.task_id:
                    self._pump(event.step, event.task_id, final=True)  # what it printed comes before its "done"
                state = self.state.apply(event)
                if state is not None:
                    self.view.step(state, self.state)
            elif isinstance(event, OutputEvent):
                self._lines(event.step, event.text, final=False)
            elif isinstance(event, EchoEvent):
                self.view.echo(event.text, event.to_stdout)
            elif isinstance(event, RunEnded):
                for step in list(self._partial):
                    self._lines(step, "", final=True)
                self.state.ended, self.state.ended_at = event, time.time()
        if self.stream_output:
            for state in self.state.running():
                if state.status == "running" and state.task_id:
                    self._pump(state.name, state.task_id, final=False)
        self.view.refresh(self.state)

    def _pump(self, step: str, task_id: str, final: bool) -> None:
        """Show what a step's task printed since the last look (its console rows in the store)."""
        try:
            rows = outputs.read_console(self.db, task_id, after=self._seq.get(task_id, 0))
        except Exception:  # noqa: BLE001 - a busy store: the next look gets it
            return
        for row in rows:
            self._seq[task_id] = row["seq"]
            self._lines(step, row["text"], final=False)
        if final:
            self._lines(step, "", final=True)

    def _lines(self, step: str, text: str, final: bool) -> None:
        text = self._partial.pop(step, "") + text
        lines = text.split("\n")
        last = lines.pop()
        for line in lines:
            self.view.output(step, line.rstrip("\r"), self.state)
        if last and final:
            self.view.output(step, last.rstrip("\r"), self.state)
        elif last:
            self._partial[step] = last

    def _ended_in_store(self) -> bool:
        from .store import tasks

        try:
            row = tasks.get_task(self.db, self.run_id)
        except Exception:  # noqa: BLE001 - gone or busy: keep waiting for end()
            return False
        if row.status in _status.FINAL:
            self._events.append(RunEnded(row.status, row.status_message or ""))
            return True
        return False


class StepWriter(io.TextIOBase):
    """sys.stdout/sys.stderr while a debug run's step runs: its prints go to the view, under its name."""

    def __init__(self, reporter: Reporter, step: str):
        self._reporter, self._step = reporter, step

    def write(self, text: str) -> int:
        self._reporter.output(self._step, text)
        return len(text)

    def isatty(self) -> bool:
        return False


class Silent:
    """The reporter of a run that shows nothing (quiet, or another run's view is live)."""

    live = False

    def step(self, *args: Any, **kwargs: Any) -> None:
        pass

    def output(self, step: str, text: str) -> None:
        pass

    def echo(self, text: str, to_stdout: bool) -> None:
        from .progress_view import echo_raw

        echo_raw(text, to_stdout)

    def steps_done(self) -> None:
        pass

    def end(self, status: str, message: str = "") -> None:
        pass

    def call(self, name: str, func: Callable, args: tuple, kwargs: dict) -> Any:
        return func(*args, **kwargs)


SILENT = Silent()

_lock = threading.Lock()
_open: dict[str, Reporter] = {}  # run id -> the reporter drawing it (at most one live at a time)
_debugging: contextvars.ContextVar[Reporter | Silent | None] = contextvars.ContextVar("labpipe_debug_progress", default=None)


def open_run(db: Any, run_id: str, name: str, *, quiet: bool = False, stream_output: bool | None = None,
             stream: TextIO | None = None) -> Reporter | Silent:
    """Start showing a run (see the module docstring for the settings); returns what the engine feeds.

    stream: where to draw (default: this process's stderr, beneath any console capture).
    """
    chosen = settings(quiet, stream_output)
    if chosen.mode == "off":
        return SILENT
    from .console import terminal_stream
    from .progress_view import LiveView, choose

    with _lock:
        if any(r.live for r in _open.values()):
            return SILENT
        stale = list(_open.values())
    for reporter in stale:  # a run whose scheduler ended but that nobody ended: end it now
        reporter.end("ended")
    own = _own_console(db, run_id) if stream is None else None
    out = stream if stream is not None else own or terminal_stream(sys.stderr)
    try:
        view = _plain_uncoloured(out) if own is not None else choose(out, chosen.mode)
    except Exception:  # noqa: BLE001 - rich missing or a strange stream: fall back to lines
        log.debug("live progress view unavailable", exc_info=True)
        from .progress_view import PlainLines

        view = PlainLines(out)
    interval = LIVE_INTERVAL if isinstance(view, LiveView) else PLAIN_INTERVAL
    reporter = Reporter(db, run_id, name, view, stream_output=chosen.stream_output, interval=interval)
    with _lock:
        _open[run_id] = reporter
    return reporter.start()


#: the console stream a run's progress lines are recorded under when the run is a worker's task
PROGRESS_STREAM = "progress"


class _ConsoleLines(io.TextIOBase):
    """Progress lines written as console rows of the run's own task, under `PROGRESS_STREAM`: kept
    for `labpipe show --log`, and told apart from what the script prints by whoever follows the run."""

    encoding = "utf-8"

    def __init__(self, db: Any, task_id: str):
        self._db, self._task_id = db, task_id

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def write(self, text: str) -> int:
        outputs.add_console(self._db, self._task_id, PROGRESS_STREAM, text)
        return len(text)


def _plain_uncoloured(out: TextIO):
    from .progress_view import PlainLines

    view = PlainLines(out)
    view.color = False  # stored lines: no escape codes
    return view


def _own_console(db: Any, run_id: str) -> TextIO | None:
    """Where a run's progress goes when this process is that run's task under a worker (a services
    worker runs the controller): its console rows, not its stderr. None elsewhere."""
    return _ConsoleLines(db, run_id) if os.environ.get(ENV_TASK_ID) == run_id else None


def run_ended(run_id: str, status: str, message: str = "") -> None:
    """The run's task ended (`pipeline_task.finish`): its view draws its last frame, if it has one."""
    with _lock:
        reporter = _open.pop(run_id, None)
    if reporter is not None:
        reporter.end(status, message)


@contextlib.contextmanager
def debug_run(db: Any, run_id: str, name: str, *, quiet: bool = False, stream_output: bool | None = None) -> Iterator[None]:
    """While a debug run's logic runs here, its component calls (`call_step`) are shown as steps."""
    reporter = open_run(db, run_id, name, quiet=quiet, stream_output=stream_output)
    token = _debugging.set(reporter)
    try:
        yield
    finally:
        _debugging.reset(token)
        reporter.steps_done()


def call_step(name: str, func: Callable, args: tuple, kwargs: dict) -> Any:
    """A component called outside a scheduled run: a plain call, shown as a step inside a debug run."""
    reporter = _debugging.get()
    if reporter is None:
        return func(*args, **kwargs)
    return reporter.call(name, func, args, kwargs)


def follow(run_task_id: str, *, quiet: bool = False, stream_output: bool | None = True, poll: float = 0.25,
           stream: TextIO | None = None, db: Any = None, echo_console: bool = False,
           ended: Callable[[], bool] | None = None) -> str:
    """Show a pipeline run executed elsewhere (a services worker, `labpipe agent`) until it ends;
    returns its final status (completed, failed, stopped, published).

    The same view as a run in this process, fed from the store: its steps' states (`pipeline_nodes`,
    which the controller writes at most every 0.1 s) and what they print (their console rows).
    run_task_id: the pipeline task's id (or a unique prefix). quiet: wait without showing anything.
    stream_output: show the steps' output, prefixed by their names. poll: seconds between looks.
    Dead workers' tasks are reaped meanwhile, so a killed controller ends the wait (failed).
    echo_console: also copy what the run's own script prints (its stdout and stderr console rows, not
    its recorded progress lines) to this process's stdout and stderr, unless quiet.
    ended: once the run's status is final, wait until this also says True (its script's process ended).
    Ctrl-C ends the view and is raised (stopping the run is the caller's choice).
    """
    from .store import leases, pipelines, tasks
    from .store.db import get_database

    db = db or get_database()
    row = tasks.get_task(db, run_task_id)
    reporter = open_run(db, row.id, row.name, quiet=quiet, stream_output=stream_output, stream=stream)
    seen: dict[str, tuple] = {}
    last_reap = 0.0
    echo = _ConsoleEcho(db, row.id) if echo_console and not quiet else None
    try:
        while True:
            row = tasks.get_task(db, row.id)  # the status first: nodes read after a final status are complete
            for node in pipelines.load_nodes(db, row.id):
                key = (node["status"], node["task"])
                if seen.get(node["name"]) != key:
                    seen[node["name"]] = key
                    error = _stored_cause(db, node) if node["status"] == "failed" else node["error"]
                    reporter.step(node["name"], node["status"], node["task"], node["started"], node["completed"], error)
            if echo is not None:
                echo.pump(reporter)
            if row.status in _status.FINAL and (ended is None or ended()):
                if echo is not None:
                    echo.pump(reporter)
                reporter.end(row.status, row.status_message or "")
                return row.status
            now = time.monotonic()
            if now - last_reap >= 1.0:
                leases.reap_expired(db)
                last_reap = now
            time.sleep(poll)
    except BaseException:
        reporter.end("interrupted" if sys.exc_info()[0] is KeyboardInterrupt else "ended")
        raise


class _ConsoleEcho:
    """What a followed run's own script prints, copied to this process's stdout and stderr as it grows
    (its progress lines, recorded under PROGRESS_STREAM, are drawn by the follower's view instead)."""

    def __init__(self, db: Any, task_id: str):
        self._db, self._task_id, self._seq = db, task_id, 0

    def pump(self, reporter: Any) -> None:
        rows = outputs.read_console(self._db, self._task_id, after=self._seq)
        for r in rows:
            self._seq = r["seq"]
            if r["stream"] in ("stdout", "stderr"):
                reporter.echo(r["text"], to_stdout=r["stream"] == "stdout")


def _stored_cause(db: Any, node: dict) -> str | None:
    """A failed step's root cause as its worker recorded it ('ValueError: bad row 3'), else its message."""
    from .store import tasks

    if node.get("task"):
        try:
            error = tasks.get_task(db, node["task"]).runtime.get("error")
        except Exception:  # noqa: BLE001
            error = None
        if error:
            return f"{error.get('type', 'Error')}: {error.get('message', '')}".rstrip(": ")
    return node.get("error")


@atexit.register
def _end_all() -> None:
    """At exit, end every view still drawing (a run nobody ended), so the terminal is left clean."""
    with _lock:
        reporters = list(_open.values())
    for reporter in reporters:
        reporter.end("ended")
