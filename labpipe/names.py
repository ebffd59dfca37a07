"""The rules for names users give things: artifacts, steps, tasks, projects, queues, models.

Checked where a name is created (`Task.upload_artifact`, `return_values`, `add_step(name=)`,
`Task.enqueue(queue_name=)`, ...), before any row or file exists, with one `InvalidName` that says
which kind of thing, the name (shortened) and the rule.

Two strengths, by what a name becomes:
- artifact and return-value names (and step names) are strict: ClearML-style references
  (`${step.artifacts.<name>.url}`) and, in older versions, file names were built from them. No "/",
  "\\", NUL or other control character, not "." or "..", not empty, at most 255 characters.
- task, project and model names are labels in SQLite: only control characters (NUL included) and
  absurd lengths (over 1024 characters) are refused; queue names are labels too, but not empty or
  blank-edged and at most 255 characters (they are typed on command lines: `labpipe agent --queue`).

No name ever becomes a path: what labpipe writes on disk is named by `contained.file_name_for`,
so a name that slipped past these rules (a row written by another version or another user into a
shared store) still cannot place a file anywhere.
"""

from __future__ import annotations

import re
from typing import Any

from .errors import InvalidName

#: Longest artifact, return-value or step name (characters).
MAX_NAME = 255
#: Longest task, project or model name (characters).
MAX_LABEL = 1024
#: Longest queue name (characters).
MAX_QUEUE = 255

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_SHOWN = 60


def shown(name: Any) -> str:
    """A name for an error message: its repr, shortened to about 60 characters."""
    text = repr(name)
    if len(text) <= _SHOWN:
        return text
    return f"{text[:_SHOWN - 3]}...' ({len(name) if isinstance(name, str) else '?'} characters)"


def _refuse(kind: str, name: Any, rule: str, where: str) -> InvalidName:
    prefix = f"{where}: " if where else ""
    return InvalidName(f"{prefix}{kind} name {shown(name)} is not valid: {rule}")


def _control(name: str) -> str | None:
    found = _CONTROL.search(name)
    if found is None:
        return None
    char = found.group()
    if char == "\0":
        return "NUL byte"
    return f"lone surrogate {char!r} (not text)" if "\ud800" <= char <= "\udfff" else f"control character {char!r}"


def check_artifact_name(name: Any, *, kind: str = "artifact", where: str = "") -> str:
    """`name` if it is a valid artifact (or return-value) name, else InvalidName saying why.

    kind: what the name names, for the message ("artifact", "return value", "step").
    where: what is being defined, for the message (e.g. "step 'train'").
    """
    if not isinstance(name, str):
        raise _refuse(kind, name, f"it must be a string, not {type(name).__name__}", where)
    if not name:
        raise _refuse(kind, name, "it must not be empty", where)
    if len(name) > MAX_NAME:
        raise _refuse(kind, name, f"it must be at most {MAX_NAME} characters, not {len(name)}", where)
    if name in (".", ".."):
        raise _refuse(kind, name, "'.' and '..' are not names; pick a word", where)
    for char in ("/", "\\"):
        if char in name:
            raise _refuse(kind, name, f"it must not contain {char!r} (use '_' or '-' instead)", where)
    bad = _control(name)
    if bad:
        raise _refuse(kind, name, f"it must not contain a {bad}", where)
    return name


def check_step_name(name: Any, *, where: str = "", references: bool = False) -> str:
    """`name` if it is a valid pipeline step name (the artifact rule), else InvalidName.

    references: the name is used in `${step.field}` references (PipelineController), so it must not
    contain "." either.
    """
    check_artifact_name(name, kind="step", where=where)
    if references and "." in name:
        raise _refuse("step", name, "it must not contain '.' (references read `${step.field}`); use '_' instead", where)
    return name


def check_label(name: Any, *, kind: str, where: str = "", allow_empty: bool = True) -> str:
    """`name` if it is a valid task, project or model name, else InvalidName saying why.

    kind: "task", "project" or "model". allow_empty: whether "" is accepted (projects: the default
    project is "").
    """
    if not isinstance(name, str):
        raise _refuse(kind, name, f"it must be a string, not {type(name).__name__}", where)
    if not name and not allow_empty:
        raise _refuse(kind, name, "it must not be empty", where)
    if len(name) > MAX_LABEL:
        raise _refuse(kind, name, f"it must be at most {MAX_LABEL} characters, not {len(name)}", where)
    bad = _control(name)
    if bad:
        raise _refuse(kind, name, f"it must not contain a {bad}", where)
    return name


def check_queue_name(name: Any, *, where: str = "") -> str:
    """`name` if it is a valid queue name, else InvalidName saying why."""
    if not isinstance(name, str):
        raise _refuse("queue", name, f"it must be a string, not {type(name).__name__}", where)
    if not name.strip():
        raise _refuse("queue", name, "it must not be empty or blank (e.g. 'default', 'services')", where)
    if name != name.strip():
        raise _refuse("queue", name, "it must not start or end with spaces", where)
    if len(name) > MAX_QUEUE:
        raise _refuse("queue", name, f"it must be at most {MAX_QUEUE} characters, not {len(name)}", where)
    bad = _control(name)
    if bad:
        raise _refuse("queue", name, f"it must not contain a {bad}", where)
    return name


__all__ = [
    "MAX_LABEL",
    "MAX_NAME",
    "MAX_QUEUE",
    "check_artifact_name",
    "check_label",
    "check_queue_name",
    "check_step_name",
    "shown",
]
