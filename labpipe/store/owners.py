"""Who owns a run, as a process: the identity an owner id stands for, and whether it still exists.

An owner id is `<kind>:<host>:<pid>` (a pool or daemon worker, or `local:` for a user's own
process). A pid alone is a weak name: once its process dies the kernel may hand it to another one.
So a claim also records the owner's *process identity*, `<boot id>/<pid ns>/<time ns>/<start time>`:
the kernel's random boot id, the inodes of the pid and time namespaces, and the process's start time
in clock ticks since boot (field 22 of /proc/<pid>/stat), which a reused pid does not share. Same boot
and time namespace also mean the same CLOCK_MONOTONIC (`same_clock`): a renewal time the owner wrote
with `time.monotonic()` can be compared with the observer's own.

`owner_state` judges an owner from this process: "dead" when it is a process of this machine and
pid namespace that no longer exists (or whose pid now belongs to a newer process, or is a zombie),
"alive" when it does, and None when this process cannot tell (another host, another container,
no /proc): the caller then falls back to watching the lease's heartbeat (store/leases.py).
"""

from __future__ import annotations

import os
import socket
from functools import lru_cache

_PROC = "/proc"


def _stat_fields(pid: int | str) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name (index 0 is the state), or None if gone."""
    try:
        with open(f"{_PROC}/{pid}/stat", encoding="ascii", errors="replace") as fh:
            text = fh.read()
    except OSError:
        return None
    return text.rsplit(")", 1)[1].split()


@lru_cache(maxsize=1)
def _machine() -> tuple[str, str, str] | None:
    """(boot id, pid namespace, time namespace) of this process, or None where /proc cannot tell."""
    try:
        with open(f"{_PROC}/sys/kernel/random/boot_id", encoding="ascii") as fh:
            boot = fh.read().strip()
        pidns = str(os.stat(f"{_PROC}/self/ns/pid").st_ino)
    except OSError:
        return None
    try:
        timens = str(os.stat(f"{_PROC}/self/ns/time").st_ino)
    except OSError:  # a kernel before 5.6: one time namespace for all
        timens = "-"
    return boot, pidns, timens


_me: tuple[int, str | None] | None = None


def process_identity() -> str | None:
    """This process's identity, `<boot id>/<pid ns>/<time ns>/<start time>` (None without /proc)."""
    global _me
    pid = os.getpid()
    if _me is None or _me[0] != pid:  # a forked child is another process
        machine = _machine()
        fields = _stat_fields("self")
        _me = (pid, "/".join((*machine, fields[19])) if machine and fields and len(fields) > 19 else None)
    return _me[1]


def _parse(identity: str | None) -> tuple[tuple[str, str, str], str] | None:
    parts = identity.split("/") if identity else []
    return ((parts[0], parts[1], parts[2]), parts[3]) if len(parts) == 4 else None


def same_clock(identity: str | None) -> bool:
    """Whether the process with this identity reads the same CLOCK_MONOTONIC as this one (same boot,
    same time namespace), so `time.monotonic()` values it wrote can be compared with ours. That clock
    never steps, and stands still while the machine is suspended."""
    parsed, machine = _parse(identity), _machine()
    return parsed is not None and machine is not None and (parsed[0][0], parsed[0][2]) == (machine[0], machine[2])


def host() -> str:
    return socket.gethostname()


def owner_pid(owner: str | None) -> int | None:
    """The pid an owner id names, if it names a process of this host; else None."""
    if not owner:
        return None
    parts = owner.rsplit(":", 2)
    if len(parts) != 3 or parts[1] != host() or not parts[2].isdigit():
        return None
    return int(parts[2])


def owner_state(owner: str | None, identity: str | None) -> str | None:
    """'alive', 'dead', or None (cannot tell from here) for the process an owner id names.

    identity: the process identity recorded with the claim (None for rows that have none: then a
    live process with that pid counts as the owner, the safe side).
    """
    pid = owner_pid(owner)
    if pid is None:
        return None
    start = None
    if identity:
        parsed = _parse(identity)
        if parsed is None or parsed[0][:2] != (_machine() or ())[:2]:  # another boot, or container: cannot tell
            return None
        start = parsed[1]
    fields = _stat_fields(pid)
    if fields is None:
        if not os.path.isdir(_PROC):  # no /proc: ask the kernel about the pid only
            return _signal_zero(pid)
        return "dead"
    if fields[0] in ("Z", "X"):  # killed, waiting to be reaped by its parent
        return "dead"
    if start and len(fields) > 19 and fields[19] != start:  # the pid now names a newer process
        return "dead"
    return "alive"


def _signal_zero(pid: int) -> str:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return "dead"
    except PermissionError:
        return "alive"
    return "alive"
