"""A real small filesystem for disk-full tests: a tmpfs of a few MB mounted on a temp folder.

Needs root and a kernel that lets this process mount (a container may not). `mounted()` raises
`Unavailable` (with the reason) when it cannot mount, so a test can skip rather than fail for the
environment. It always unmounts on the way out.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from pathlib import Path


class Unavailable(Exception):
    """No small filesystem can be mounted here (not root, no mount(8), or mounting not permitted)."""


@contextlib.contextmanager
def mounted(folder: Path, size: int):
    """Mount a tmpfs of `size` bytes on `folder` (created if needed) for the duration of the block."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        raise Unavailable("mounting a small tmpfs needs root and mount(8)")
    folder.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(folder)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise Unavailable(f"cannot mount a tmpfs here: {done.stderr.strip() or done.returncode}")
    try:
        yield folder
    finally:
        if subprocess.run(["umount", str(folder)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def fill(folder: Path, leave: int = 0) -> Path:
    """Fill the filesystem holding `folder` until at most `leave` bytes are free; returns the filler file."""
    filler = folder / "filler"
    with open(filler, "wb") as fh:
        chunk = b"\0" * 65536
        while True:
            free = shutil.disk_usage(folder).free
            if free <= leave:
                break
            try:
                fh.write(chunk[: max(1, min(len(chunk), free - leave))])
                fh.flush()
            except OSError:
                break
    return filler
