"""What a pipeline run tells its progress view: events (a step changed state, a step printed, the run
ended) and the state they add up to (each step's status and times, counts, what finished last).

Pure: no store, no threads, no terminal. The engine emits the events (`labpipe.progress.Reporter`),
or they are read back from the store for a run that executes elsewhere (`labpipe.progress.follow`);
the views in `labpipe.progress_view` draw the state.
"""

from __future__ import annotations

import re
import time
from collections import Counter, deque
from dataclasses import dataclass, field

from .status import shown

#: Node statuses that end a step (as in pipeline/dag.py).
FINISHED = frozenset({"completed", "cached", "failed", "aborted", "skipped"})

#: How the counts are grouped for people: running (queued or running), done, cached, failed, skipped, pending.
GROUPS = {"queued": "running", "running": "running", "completed": "done", "cached": "cached", "failed": "failed",
          "aborted": "failed", "skipped": "skipped", "pending": "pending"}


@dataclass(frozen=True, slots=True)
class StepEvent:
    """One step changed state.

    status: the node status (pending, queued, running, completed, cached, failed, aborted, skipped).
    task_id: the step's task; for a cached step, the earlier task whose results it reuses.
    started, completed: epoch seconds when known (a cached step: the reused task's own times).
    error: why it failed, was aborted or skipped (the root cause first).
    """

    step: str
    status: str
    task_id: str | None = None
    started: float | None = None
    completed: float | None = None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class OutputEvent:
    """A step printed `text` (one or more complete lines, or the last unterminated part)."""

    step: str
    text: str


@dataclass(frozen=True, slots=True)
class RunEnded:
    """The run ended: status is the pipeline task's (completed, failed, stopped); message says why."""

    status: str
    message: str = ""


@dataclass(slots=True)
class StepState:
    """What the view knows of one step."""

    name: str
    status: str = "pending"
    task_id: str | None = None
    started: float | None = None
    completed: float | None = None
    error: str | None = None
    seen_at: float = 0.0  # when this process first saw it running (for elapsed time when started is unknown)

    def elapsed(self, now: float | None = None) -> float | None:
        """Seconds it ran (finished) or has been running (so far)."""
        start = self.started or self.seen_at or None
        if start is None:
            return None
        end = self.completed if self.status in FINISHED else (now or time.time())
        return max(0.0, (end or time.time()) - start)


@dataclass
class RunState:
    """The run as the events so far describe it."""

    name: str
    run_id: str
    started: float = field(default_factory=time.time)
    steps: dict[str, StepState] = field(default_factory=dict)
    counts: Counter = field(default_factory=Counter)  # by group (GROUPS)
    recent: deque = field(default_factory=lambda: deque(maxlen=6))  # names of the last steps to finish
    ended: RunEnded | None = None
    ended_at: float | None = None

    def apply(self, event: StepEvent) -> StepState | None:
        """Fold a step event in; returns the step's state, or None when nothing changed."""
        state = self.steps.get(event.step)
        if state is None:
            state = self.steps[event.step] = StepState(event.step, status="")
        elif state.status == event.status and state.task_id == event.task_id:
            return None
        if state.status:
            self.counts[GROUPS.get(state.status, state.status)] -= 1
        state.status = event.status
        state.task_id = event.task_id or state.task_id
        state.started = event.started or state.started
        state.completed = event.completed
        state.error = event.error
        if event.status in ("queued", "running") and not state.seen_at:
            state.seen_at = time.time()
        self.counts[GROUPS.get(event.status, event.status)] += 1
        if event.status in FINISHED:
            if event.step in self.recent:
                self.recent.remove(event.step)
            self.recent.append(event.step)
        return state

    def running(self) -> list[StepState]:
        """Steps queued or running, in the order they were declared."""
        return [s for s in self.steps.values() if s.status in ("queued", "running")]

    def total(self) -> float:
        """Seconds the run has taken (so far, or in all once it ended)."""
        return (self.ended_at or time.time()) - self.started


_CAUSE_HEAD = re.compile(r"^step '[^']*'(?: \(task [0-9a-f]+\))? (?:failed|was skipped)[:]? ?")


def first_line(error: str | None) -> str:
    """The first line of a root cause, without the "step 'x' (task ...) failed:" the view already shows."""
    if not error or not error.strip():
        return ""
    line = error.strip().splitlines()[0]
    return _CAUSE_HEAD.sub("", line) or line


def short_id(task_id: str | None, unicode: bool = True) -> str:
    """A task id as people read it: its first 6 characters and an ellipsis."""
    if not task_id:
        return "?"
    return task_id[:6] + ("…" if unicode else "...")


def duration(seconds: float | None) -> str:
    """0.31 s, 12.3 s, 2 min 05 s, 1 h 02 min."""
    if seconds is None:
        return "-"
    if seconds < 10:
        return f"{seconds:.2f} s"
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} min {int(seconds % 60):02d} s"
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60):02d} min"


def ago(epoch: float | None, now: float | None = None) -> str:
    """How long ago, coarsely: 12 s ago, 5 min ago, 2 h ago, 3 d ago."""
    if epoch is None:
        return "earlier"
    seconds = max(0.0, (now or time.time()) - epoch)
    if seconds < 60:
        return f"{int(seconds)} s ago"
    if seconds < 3600:
        return f"{int(seconds // 60)} min ago"
    if seconds < 86400:
        return f"{int(seconds // 3600)} h ago"
    return f"{int(seconds // 86400)} d ago"


def describe(state: StepState, unicode: bool = True) -> str:
    """The words after a step's name in a plain line or a live row: 'done in 0.31 s', 'cached (task 3f2a91…, 2 h ago)'."""
    s = state.status
    if s == "running":
        return "started"
    if s == "queued":
        return "queued"
    if s == "completed":
        return f"done in {duration(state.elapsed())}"
    if s == "cached":
        return f"cached (task {short_id(state.task_id, unicode)}, {ago(state.completed)})"
    if s in ("failed", "aborted", "skipped"):
        word = shown(s)  # an aborted step reads "stopped", as in `labpipe show`
        why = first_line(state.error)
        return f"{word}: {why}" if why else word
    return s


def summary(state: RunState) -> str:
    """'3 running, 12 done, 4 cached, 1 failed, 30 pending' (groups with none are left out, but done)."""
    parts = []
    for group in ("running", "done", "cached", "failed", "skipped", "pending"):
        n = state.counts.get(group, 0)
        if n or group == "done":
            parts.append(f"{n} {group}")
    return ", ".join(parts)
