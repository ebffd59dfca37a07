"""Task statuses and the transitions between them (ClearML's task life cycle)."""

from __future__ import annotations

CREATED = "created"
QUEUED = "queued"
IN_PROGRESS = "in_progress"
COMPLETED = "completed"
FAILED = "failed"
STOPPED = "stopped"
PUBLISHED = "published"

STATUSES = (CREATED, QUEUED, IN_PROGRESS, COMPLETED, FAILED, STOPPED, PUBLISHED)
FINAL = frozenset({COMPLETED, FAILED, STOPPED, PUBLISHED})
SUCCEEDED = frozenset({COMPLETED, PUBLISHED})

#: to-status -> the statuses it may be reached from. Resetting (-> created) is allowed from any
#: finished state, as ClearML's `reset()`; re-enqueueing a failed or stopped task is allowed too,
#: since that is what a user means by "run it again".
ALLOWED_FROM: dict[str, frozenset[str]] = {
    CREATED: frozenset({QUEUED, FAILED, STOPPED, COMPLETED, CREATED}),
    QUEUED: frozenset({CREATED, FAILED, STOPPED, IN_PROGRESS}),
    IN_PROGRESS: frozenset({CREATED, QUEUED}),
    COMPLETED: frozenset({CREATED, IN_PROGRESS}),
    FAILED: frozenset({CREATED, QUEUED, IN_PROGRESS}),
    STOPPED: frozenset({CREATED, QUEUED, IN_PROGRESS}),
    PUBLISHED: frozenset({COMPLETED}),
}


def check_status(status: str) -> str:
    """Return `status` if it is a known task status, else raise ValueError listing the known ones."""
    if status not in ALLOWED_FROM:
        raise ValueError(f"unknown task status {status!r}; expected one of {', '.join(STATUSES)}")
    return status


#: A pipeline step's states as the DAG records them (ClearML's node statuses); a step's task has one
#: of `STATUSES`. ClearML calls one state by two words: a task is `stopped`, a node `aborted`.
STEP_ABORTED = "aborted"


def shown(status: str) -> str:
    """The one word a person reads for a task's or a pipeline step's state.

    ClearML's task status `stopped` is the word: `labpipe tasks --status stopped` finds what
    `labpipe show RUN` lists as stopped. The node status `aborted` stays in the Python API
    (`get_pipeline_dag()`, `fail_condition="aborted"`), where ClearML code expects it.
    """
    return STOPPED if status == STEP_ABORTED else status
