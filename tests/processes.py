"""Process helpers shared by the agent tests, and a task function they all run (workers run its source)."""

from __future__ import annotations

import os
import time

WAIT = 20  # seconds: a generous bound for anything a test waits for on a loaded 2-core machine


def alive(pid: int) -> bool:
    """Whether a process exists and is not a zombie waiting for its parent to reap it."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def wait_until(predicate, timeout: float = WAIT, step: float = 0.01):
    """The first truthy value of predicate(), polled until `timeout`; AssertionError after that."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    raise AssertionError(f"condition not met within {timeout} s")


def sleeper(pid_file, seconds=30.0):
    """Write this process's pid, then sleep: a task to stop, kill or outlast a grace period."""
    import os
    import time

    with open(pid_file, "w") as fh:
        fh.write(str(os.getpid()))
    time.sleep(seconds)
    return "slept"
