"""An uncaught labpipe error shows the user's frames, not labpipe's insides.

When a script ends on a LabpipeError (a failed step reaching the pipeline logic, an unknown task id),
Python would print every frame down to the line inside labpipe that raised it: proxies, the run's
bookkeeping, the store. Those frames say nothing to the person reading; the message (which for a failed
step already carries the step's own exception and the user's frames where it happened) and the user's
own lines that led there do. So while labpipe is imported, the interpreter's default hook is wrapped:
for a LabpipeError, frames inside the labpipe package are left out of the printout (the exit status
stays 1). Anything else prints as Python prints it.

`LABPIPE_FULL_TRACEBACK=1` shows every frame again (for debugging labpipe itself). A hook another tool
installed (IPython, a crash reporter) is left alone.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from types import TracebackType

ENV_FULL = "LABPIPE_FULL_TRACEBACK"
_PACKAGE = os.path.dirname(os.path.abspath(__file__)) + os.sep


def install() -> None:
    """Wrap the interpreter's default excepthook (only if nobody replaced it), once."""
    if sys.excepthook is sys.__excepthook__:
        sys.excepthook = _hook


def _hook(kind: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
    from .errors import LabpipeError

    if not isinstance(exc, LabpipeError) or os.environ.get(ENV_FULL, "") not in ("", "0"):
        sys.__excepthook__(kind, exc, tb)
        return
    sys.stderr.write("".join(format_trimmed(exc)))
    sys.stderr.flush()


def format_trimmed(exc: BaseException) -> list[str]:
    """`exc` formatted as Python does, with the frames inside labpipe (in it and its chained causes) left out."""
    import traceback  # lazily: only when an error is shown

    te = traceback.TracebackException.from_exception(exc)
    seen = set()
    stack = [te]
    while stack:
        one = stack.pop()
        if id(one) in seen:
            continue
        seen.add(id(one))
        one.stack = traceback.StackSummary.from_list([f for f in one.stack if not f.filename.startswith(_PACKAGE)])
        stack.extend(x for x in (one.__cause__, one.__context__) if x is not None)
    return list(te.format())
