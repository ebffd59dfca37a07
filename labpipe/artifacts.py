"""Artifacts: turning objects, files and folders into blobs and back.

Formats, chosen for speed and fidelity:
- numpy arrays (non-object dtype): the .npy header followed by the raw buffer, written straight
  from the array's memory and read back with `np.frombuffer` over the verified bytes: no pickling
  and no extra copy, so a 100 MB array moves at disk speed.
- files: their bytes; folders: a deterministic zip (sorted entries, fixed timestamps) so the same
  folder always has the same address and is stored once.
- everything else: cloudpickle, protocol 5.
"""

from __future__ import annotations

import io
import logging
import os
import pickle
import re
import reprlib
import shutil
import stat
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import contained
from .errors import ArtifactError, UnsafePath
from .store import blobs, outputs

if TYPE_CHECKING:
    from .store.db import Database

_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
_DIGEST = re.compile(r"[0-9a-f]{32}")
_repr = reprlib.Repr()
_repr.maxstring = 200
_repr.maxother = 200
_repr.maxlong = 60

log = logging.getLogger(__name__)


def preview_of(obj: Any) -> str:
    """A short human preview of an artifact (what ClearML shows in its artifact table)."""
    try:
        # numpy and pandas summarise themselves; small builtin containers are cheap to repr whole;
        # anything else goes through reprlib so a huge list cannot make a huge preview.
        small = isinstance(obj, (list, tuple, dict, set)) and len(obj) <= 32
        text = repr(obj) if small or type(obj).__module__.split(".")[0] in ("numpy", "pandas") else _repr.repr(obj)
    except Exception:  # a broken __repr__ must not stop the upload
        text = f"<{type(obj).__qualname__}>"
    head = f"{type(obj).__module__}.{type(obj).__qualname__}" if type(obj).__module__ != "builtins" else type(obj).__qualname__
    if hasattr(obj, "shape"):
        head += f" shape={getattr(obj, 'shape', None)}"
    text = text if len(text) <= 1000 else text[:997] + "..."
    return f"{head}: {text}"


def upload(db: Database, task_id: str, name: str, obj: Any, *, metadata: dict | None = None, preview: Any = None) -> str:
    """Store `obj` as artifact `name` of task `task_id` (replacing one of that name); returns its kind.

    The bytes are written (and made durable) before the artifact's row: a crash leaves at most an
    unreferenced blob, never a row without bytes. Raises ArtifactError naming the artifact if `obj`
    cannot be stored.
    """
    ref, kind, filename = encode(db, name, obj, what=f"artifact {name!r} of task {task_id}")
    text = str(preview) if preview is not None else (
        f"{kind}: {filename}" if kind in ("file", "folder") else preview_of(obj)
    )
    outputs.put_artifact(db, task_id, name, ref, kind=kind, filename=filename, preview=text, metadata=dict(metadata or {}))
    return kind


def _is_ndarray(obj: Any) -> bool:
    np = sys.modules.get("numpy")
    return np is not None and isinstance(obj, np.ndarray) and not obj.dtype.hasobject


def encode(db: Database, name: str, obj: Any, *, what: str, paths: bool = True) -> tuple[blobs.BlobRef, str, str]:
    """Make `obj` a durable blob; returns (ref, kind, filename). Nothing is written if it fails.

    paths: whether a str or Path naming an existing file or folder means that file or folder (what
    `upload_artifact` wants); a step's return value is always the value itself (paths=False).

    A str or Path naming an existing file or folder uploads that file or folder, as ClearML does.
    """
    if paths and isinstance(obj, (str, Path)) and len(str(obj)) < 4096 and "\n" not in str(obj):
        path = Path(obj).expanduser()
        try:
            is_file, is_dir = path.is_file(), path.is_dir()
        except OSError:
            is_file = is_dir = False
        if is_file:
            return blobs.prepare_file(db, path, what=what), "file", path.name
        if is_dir:
            return blobs.prepare(db, [_zip_folder(path)], what=what), "folder", path.name
    if _is_ndarray(obj):
        import numpy as np

        # Write the array's memory as it lies: C or Fortran order need no copy; only a strided view does.
        arr = obj if (obj.flags.c_contiguous or obj.flags.f_contiguous) else obj.copy(order="C")
        header = io.BytesIO()
        np.lib.format.write_array_header_2_0(header, np.lib.format.header_data_from_array_1_0(arr))
        body = (arr.T if not arr.flags.c_contiguous else arr).reshape(-1).view(np.uint8)
        return blobs.prepare(db, [header.getvalue(), body], what=what), "numpy", contained.file_name_for(name, ".npy", fallback="artifact")
    try:
        import cloudpickle

        data = cloudpickle.dumps(obj, protocol=5)
    except Exception as exc:
        raise ArtifactError(
            f"{what}: cannot store an object of type {type(obj).__module__}.{type(obj).__qualname__}: "
            f"it cannot be pickled ({type(exc).__name__}: {exc}); store something picklable, or a file path"
        ) from None
    kind = "pandas" if type(obj).__module__.startswith("pandas") else "pickle"
    return blobs.prepare(db, [data], what=what), kind, contained.file_name_for(name, ".pkl", fallback="artifact")


def decode(data: bytearray, kind: str) -> Any:
    """The object stored in verified bytes of the given kind (files and folders: see `materialize`)."""
    if kind == "numpy":
        import numpy as np

        # .npy header: magic(6) version(2) then a little-endian header length (2 bytes in v1, 4 in v2)
        major = data[6]
        start = (10 + int.from_bytes(data[8:10], "little")) if major == 1 else (12 + int.from_bytes(data[8:12], "little"))
        dtype, shape, fortran = _parse_npy_header(bytes(data[:start]))
        count = 1
        for dim in shape:
            count *= dim
        arr = np.frombuffer(data, dtype=dtype, offset=start, count=count)
        return arr.reshape(shape, order="F" if fortran else "C")
    if kind in ("pickle", "pandas"):
        return pickle.loads(data)
    raise ArtifactError(f"artifact of kind {kind!r} is a file or folder: use get_local_copy()")


def _parse_npy_header(head: bytes) -> tuple[Any, tuple, bool]:
    import numpy as np

    fh = io.BytesIO(head)
    version = np.lib.format.read_magic(fh)
    reader = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    shape, fortran, dtype = reader(fh)
    return dtype, shape, fortran


def _zip_folder(folder: Path) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for dirpath, dirs, files in os.walk(folder):
            dirs.sort()
            rel_dir = Path(dirpath).relative_to(folder)
            for fname in sorted(files):
                full = Path(dirpath) / fname
                if not full.is_file():  # a FIFO, socket or device: opening one could block forever
                    log.warning("%s: skipping %s: not a regular file", folder, full)
                    continue
                info = zipfile.ZipInfo(str(rel_dir / fname) if str(rel_dir) != "." else fname, date_time=_ZIP_EPOCH)
                info.external_attr = (full.stat().st_mode & 0o777) << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                zf.writestr(info, full.read_bytes())
            if not files and not dirs and str(rel_dir) != ".":
                zf.writestr(zipfile.ZipInfo(str(rel_dir) + "/", date_time=_ZIP_EPOCH), b"")
    return buf.getvalue()


def materialize(db: Database, digest: str, kind: str, filename: str, *, what: str) -> Path:
    """A local path holding the artifact's content: a file, a folder, or the pickle/npy file.

    Copies live in `<store>/cache/<hash>/`, made once per content and verified first; the store's
    own blob files are never handed out (editing one would corrupt every artifact sharing it).

    `filename` comes from a row (maybe written by another user or an older labpipe), so it is never
    used as a path: the copy is named `contained.file_name_for(filename)`, made through
    `contained` (no link followed, 0700 folders, 0600 files) and renamed into place when complete.
    """
    if not _DIGEST.fullmatch(digest or ""):
        raise ArtifactError(f"{what}: its recorded content address {digest[:80]!r} is not a blob hash; the row is damaged")
    try:
        cache = contained.private_dir(db.root / "cache")
        target_dir = contained.private_dir(cache / digest)
    except UnsafePath as exc:
        raise UnsafePath(f"{what}: {exc}") from None
    target = target_dir / contained.file_name_for(filename, fallback=digest)
    try:
        st = os.lstat(target)
    except FileNotFoundError:
        st = None
    if st is not None:
        wanted = stat.S_ISDIR if kind == "folder" else stat.S_ISREG
        if stat.S_ISLNK(st.st_mode):
            raise UnsafePath(f"{what}: {target} is a symbolic link; labpipe never follows links in its cache: remove it")
        if wanted(st.st_mode):
            return target
        raise UnsafePath(f"{what}: {target} is not a {'folder' if kind == 'folder' else 'file'}; move it away")
    data = blobs.read(db, digest, what=what)
    tmp = contained.temp_name(target_dir)
    try:
        if kind == "folder":
            contained.extract_zip(data, tmp, what=what)
        else:
            contained.write_new_file(tmp, data)
        try:
            os.replace(tmp, target)
        except OSError:  # another process placed it first (a folder cannot replace a full folder)
            pass
    finally:
        if os.path.isdir(tmp) and not os.path.islink(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
        elif os.path.lexists(tmp):
            os.unlink(tmp)
    return target


@dataclass
class Artifact:
    """A task's stored artifact, as ClearML's `task.artifacts[name]`.

    Attributes: name, hash (content address), size (bytes), type (numpy/pandas/pickle/file/folder),
    preview (short text), metadata (dict), url (a `file://` path that `StorageManager.get_local_copy`
    and `get_local_copy()` resolve).
    """

    name: str
    hash: str
    size: int
    type: str
    preview: str
    metadata: dict
    filename: str
    task_id: str
    _db: Any = None

    @property
    def url(self) -> str:
        return f"labpipe://{self.hash}/{self.filename}"

    @property
    def what(self) -> str:
        return f"artifact {self.name!r} of task {self.task_id}"

    def get(self) -> Any:
        """The stored object (verified against its hash first). Files and folders return their local path."""
        if self.type in ("file", "folder"):
            return self.get_local_copy()
        return decode(blobs.read(self._db, self.hash, what=self.what), self.type)

    def get_local_copy(self, extract_archive: bool = True) -> str:
        """A local path with the artifact's content (a folder for folder artifacts)."""
        kind = self.type if extract_archive else "file"
        zipped = not extract_archive and self.type == "folder"
        name = contained.file_name_for(self.filename, ".zip", fallback=self.hash) if zipped else self.filename
        return str(materialize(self._db, self.hash, kind, name, what=self.what))
