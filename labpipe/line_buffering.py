"""How a script that a labpipe worker runs writes its output: whole lines, each as soon as it ends.

Imports nothing but the standard library and `task_env` (no imports): `import labpipe` calls it first.
"""

from __future__ import annotations

import os
import sys

from .task_env import ENV_TASK_ID


def whole_lines_in_a_task() -> None:
    """In a script a labpipe worker runs (LABPIPE_TASK_ID set), write stdout and stderr a line at a time.

    The worker starts scripts unbuffered, so that output is never held back; but then each part of
    one `print("total is", x)` is a write of its own, and a progress line another thread writes to
    stderr meanwhile lands inside it in the task's console. Line buffering keeps lines whole and still
    shows each line as soon as it ends.
    """
    if not os.environ.get(ENV_TASK_ID):
        return
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None and getattr(stream, "write_through", False):
            try:
                reconfigure(line_buffering=True, write_through=False)
            except (ValueError, OSError):  # a closed or unusual stream: leave it as it is
                pass
