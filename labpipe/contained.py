"""Writing files that stay where they belong: inside their folder, never through a link, private.

Every file labpipe writes for an artifact (the store's `cache/`, `labpipe artifact -o`, downloads)
goes through here, because the names involved come from rows that anyone with write access to a
shared store, or an older labpipe, may have written:
- a file's name on disk is `file_name_for(recorded name)`: one path component, never "." or "..",
  no separator, NUL or control character, at most 255 bytes; so "../../x" is written as ".._.._x";
- folders are made one level at a time, and a level that already exists must be a real folder,
  not a symbolic link; files are opened with O_NOFOLLOW (and O_EXCL where they are new), so a
  link planted where labpipe writes is refused (`UnsafePath`), never followed;
- zip entries (folder artifacts) are checked one by one: absolute paths, "..", links and
  duplicates are refused before anything is written for them;
- whatever the umask, folders are made 0700 and files 0600 (0700 for files stored executable):
  artifacts are the user's data, and the store is private to its owner.
"""

from __future__ import annotations

import io
import os
import shutil
import stat
import time
import zipfile
from pathlib import Path

from .errors import ArtifactError, UnsafePath

#: Modes of what labpipe creates, whatever the umask.
DIR_MODE = 0o700
FILE_MODE = 0o600

#: Longest file name on common filesystems (ext4, xfs, btrfs, apfs), in bytes.
MAX_FILE_NAME_BYTES = 255
_UNSAFE = {chr(c) for c in range(0x20)} | {chr(c) for c in range(0x7F, 0xA0)} | {"/", "\\"}


def file_name_for(name: str | None, suffix: str = "", *, fallback: str) -> str:
    """A safe file name (one path component) for `name` + `suffix`; `fallback` if nothing is left.

    Separators, NUL and control characters become "_", "." and ".." become `fallback`, and the
    name is shortened (keeping `suffix`) to 255 bytes. A valid artifact name maps to itself.
    """
    text = "".join("_" if ch in _UNSAFE else ch for ch in (name or ""))
    text = text.encode("utf-8", "replace").decode("utf-8")  # lone surrogates cannot be file names
    room = MAX_FILE_NAME_BYTES - len(suffix.encode("utf-8"))
    raw = text.encode("utf-8")
    if len(raw) > room:
        text = raw[:room].decode("utf-8", "ignore")
    if text in ("", ".", ".."):
        text = fallback
    return text + suffix


def private_dir(path: Path) -> Path:
    """`path` as a folder of ours: made 0700 if absent (its parent must exist); an existing one must
    be a real folder, not a link to one (UnsafePath otherwise)."""
    try:
        os.mkdir(path, DIR_MODE)
    except FileExistsError:
        st = os.lstat(path)
        if stat.S_ISLNK(st.st_mode):
            raise UnsafePath(f"{path} is a symbolic link; labpipe does not write through links: remove it") from None
        if not stat.S_ISDIR(st.st_mode):
            raise UnsafePath(f"{path} is not a folder; labpipe needs a folder there: move it away") from None
        return path
    os.chmod(path, DIR_MODE)  # the umask may have taken more than group and other bits
    return path


def private_dirs(base: Path, parts: tuple[str, ...] | list[str]) -> Path:
    """`base/parts[0]/parts[1]/...`, each level made or checked by `private_dir`; `base` must exist."""
    path = base
    for part in parts:
        path = private_dir(path / part)
    return path


def open_new(path: Path, *, executable: bool = False) -> int:
    """A file descriptor for writing the new file `path` (0600, or 0700 if `executable`).

    An existing path is refused (FileExistsError), a link at `path` too (UnsafePath): never followed.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    mode = DIR_MODE if executable else FILE_MODE
    try:
        fd = os.open(path, flags, mode)
    except FileExistsError:
        if os.path.islink(path):
            raise UnsafePath(f"{path} is a symbolic link; labpipe does not write through links: remove it") from None
        raise
    os.fchmod(fd, mode)  # what the umask took, given back
    return fd


def write_new_file(path: Path, data, *, executable: bool = False) -> None:
    """Write `data` (bytes-like, or a binary file object to copy) to the new private file `path`."""
    fd = open_new(path, executable=executable)
    with os.fdopen(fd, "wb") as fh:
        if hasattr(data, "read"):
            shutil.copyfileobj(data, fh, 1 << 20)
        else:
            fh.write(data)


def replace_file(path: Path, data, *, executable: bool = False) -> None:
    """Write `data` as the file `path`, replacing what is there: written to a temp file beside it and
    renamed over it, so a link (or a hard link) at `path` is never written through; a link there is
    refused (UnsafePath)."""
    if os.path.islink(path):
        raise UnsafePath(f"{path} is a symbolic link; labpipe does not write through links: remove it")
    tmp = temp_name(path.parent)
    try:
        write_new_file(tmp, data, executable=executable)
        os.replace(tmp, path)
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)


def temp_name(folder: Path) -> Path:
    """A fresh hidden name in `folder` for a file or folder that is renamed into place when complete."""
    return folder / f".tmp-{os.getpid()}-{time.monotonic_ns()}"


def inside(folder: Path, path: Path) -> bool:
    """Whether `path` (resolved, links followed) lies inside `folder` (resolved)."""
    root = os.path.realpath(folder)
    real = os.path.realpath(path)
    return real == root or real.startswith(root.rstrip(os.sep) + os.sep)


def _member_parts(name: str, *, what: str) -> list[str]:
    """The path components of a zip entry, refusing one that would land outside the folder."""
    if "\0" in name:
        raise UnsafePath(f"{what}: zip entry {name[:80]!r} holds a NUL byte; the archive is damaged or hostile")
    if name.startswith("/"):
        raise UnsafePath(f"{what}: zip entry {name[:80]!r} is an absolute path; refusing to extract it")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise UnsafePath(f"{what}: zip entry {name[:80]!r} climbs out of its folder ('..'); refusing to extract it")
    return parts


def extract_zip(source: bytes | bytearray | memoryview | Path, into: Path, *, what: str) -> None:
    """Unpack a zip (bytes or a path) into the new folder `into` (made here, 0700), entry by entry.

    Entries that are links, absolute, climb out with "..", or repeat an earlier entry are refused
    (UnsafePath) and nothing is followed; stored modes keep only the owner's execute bit.
    """
    private_dir(into)
    opened = zipfile.ZipFile(io.BytesIO(source) if not isinstance(source, Path) else source)
    with opened as zf:
        for info in zf.infolist():
            parts = _member_parts(info.filename, what=what)
            mode = info.external_attr >> 16
            if stat.S_ISLNK(mode):
                raise UnsafePath(f"{what}: zip entry {info.filename[:80]!r} is a symbolic link; refusing to extract it")
            if not parts:
                continue
            try:
                if info.is_dir():
                    private_dirs(into, parts)
                    continue
                folder = private_dirs(into, parts[:-1])
                target = folder / parts[-1]
                with zf.open(info) as src:
                    try:
                        write_new_file(target, src, executable=bool(mode & 0o100))
                    except FileExistsError:
                        raise UnsafePath(f"{what}: zip entry {info.filename[:80]!r} appears twice; the archive is damaged") from None
            except UnsafePath:
                raise
            except OSError as exc:
                raise ArtifactError(f"{what}: cannot extract {info.filename[:80]!r} into {into}: {exc.strerror or exc}") from None


def copy_file(src: Path, dst: Path, *, follow: bool = True) -> None:
    """Copy the file `src` to `dst` (a new file is 0600).

    follow: `dst` is a path the user typed, written as `open()` would (a link there is followed, an
    existing file overwritten in place); False: `dst` is a name labpipe chose inside a folder, so a
    link there is refused and an existing file replaced, never written through (`replace_file`).
    """
    with open(src, "rb") as fh_in:
        if not follow:
            replace_file(dst, fh_in, executable=bool(os.fstat(fh_in.fileno()).st_mode & 0o100))
            return
        fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0), FILE_MODE)
        with os.fdopen(fd, "wb") as fh_out:
            shutil.copyfileobj(fh_in, fh_out, 1 << 20)


def copy_tree(src: Path, dst: Path, *, follow: bool = True) -> None:
    """Copy the folder `src` into `dst` (made 0700 if absent; what is in it already stays).

    follow: whether `dst` itself may be a link to a folder (a path the user typed). Nothing below
    `dst` is ever followed: an existing link there is refused (UnsafePath), so a folder artifact
    cannot be steered outside `dst`.
    """
    if follow and dst.is_dir():
        top = dst
    else:
        top = private_dir(dst)
    for dirpath, dirs, files in os.walk(src):
        dirs.sort()
        rel = Path(dirpath).relative_to(src)
        here = private_dirs(top, rel.parts)
        for name in sorted(files):
            copy_file(Path(dirpath) / name, here / name, follow=False)


__all__ = [
    "DIR_MODE",
    "FILE_MODE",
    "copy_file",
    "copy_tree",
    "extract_zip",
    "file_name_for",
    "inside",
    "open_new",
    "private_dir",
    "private_dirs",
    "replace_file",
    "temp_name",
    "write_new_file",
]
