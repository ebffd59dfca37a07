"""The wall clock labpipe writes into the store, with a seam to step it in tests.

`wall()` is `time.time()` plus an offset read once from `LABPIPE_CLOCK_OFFSET` (seconds, may be
negative). Processes labpipe starts inherit the environment, so a worker or agent started with the
variable set runs with its clock stepped: that is how the tests make two processes disagree about
the time, as after an NTP step or a VM resumed from suspend. Nothing decides a lease's fate by the
wall clock any more (see store/leases.py); wall times are for people (started, last seen) only.
"""

from __future__ import annotations

import os
import time

ENV_OFFSET = "LABPIPE_CLOCK_OFFSET"


def _read_offset() -> float:
    text = os.environ.get(ENV_OFFSET, "").strip()
    if not text:
        return 0.0
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"{ENV_OFFSET}={text!r}: expected a number of seconds (it steps labpipe's clock, for tests)") from None


_offset = _read_offset()


def wall() -> float:
    """Seconds since the epoch, as this process's (possibly stepped) clock says."""
    return time.time() + _offset


def set_offset(seconds: float) -> None:
    """Step this process's clock by `seconds` from the true time, now (for tests; children started
    afterwards inherit it through LABPIPE_CLOCK_OFFSET)."""
    global _offset
    _offset = float(seconds)
    os.environ[ENV_OFFSET] = repr(_offset)
