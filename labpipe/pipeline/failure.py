"""A failed step's root cause, as a person should read it first: which step, what was raised, and
where in their own code (pure: from the record a worker stores on the failed task, see agent/child.py)."""

from __future__ import annotations

from typing import Any


def root_cause(step: str, task_id: str | None, error: dict[str, Any] | None, message: str) -> str:
    """'step 'load' failed: ValueError: bad row 3' and, below it, the user's frames (file, line, function, code).

    error: the task's recorded failure ({'type', 'message', 'frames'}), or None where there is none (a
    script task, a lost worker): then the task's status message stands alone.
    """
    which = f"step {step!r}" + (f" (task {task_id})" if task_id else "")
    if not error:
        return f"{which} failed: {message or 'no message'}"
    head = f"{error.get('type', 'Error')}: {error.get('message', '')}".rstrip(": ")
    # the worker's message may add advice (a missing import, an uninstalled module): keep it
    if message and message.startswith(head) and len(message) > len(head):
        head = message
    lines = [f"{which} failed: {head}"]
    for frame in error.get("frames") or []:
        lines.append(f'  File "{frame.get("file")}", line {frame.get("line")}, in {frame.get("function")}')
        if frame.get("code"):
            lines.append(f"    {frame['code']}")
    return "\n".join(lines)
