"""ClearML's `StorageManager` for a machine with no object store: local paths, file://, http(s)://,
and labpipe:// (an artifact's or model's url)."""

from __future__ import annotations

import os
import shutil
import urllib.parse
import zipfile
from pathlib import Path

import xxhash

from . import contained
from .errors import ArtifactError, UnsafePath
from .store.db import get_database


def _local_path(url: str) -> Path | None:
    parsed = urllib.parse.urlparse(str(url))
    if parsed.scheme == "file":
        return Path(urllib.parse.unquote(parsed.netloc + parsed.path))
    if parsed.scheme == "" or (len(parsed.scheme) == 1 and os.name == "nt"):
        return Path(str(url)).expanduser()
    return None


class StorageManager:
    """Get local copies of remote files and put files in place (ClearML's names)."""

    @classmethod
    def get_local_copy(cls, remote_url: str, cache_context: str | None = None, extract_archive: bool = True,
                       name: str | None = None, force_download: bool = False) -> str:
        """A local path with the content of `remote_url`.

        Local paths and file:// URLs: the file itself. labpipe:// (artifact and model urls): a verified
        copy in the store's cache. http(s)://: downloaded once into `<store>/cache/http/`.
        Raises FileNotFoundError naming the url if it does not exist.
        """
        url = str(remote_url)
        local = _local_path(url)
        if local is not None:
            if not local.exists():
                raise FileNotFoundError(f"StorageManager.get_local_copy: {url} does not exist")
            return str(local)
        parsed = urllib.parse.urlparse(url)
        db = get_database()
        if parsed.scheme == "labpipe":
            return cls._labpipe_copy(db, parsed.netloc, parsed.path.lstrip("/"), extract_archive)
        if parsed.scheme in ("http", "https"):
            key = xxhash.xxh3_128(url.encode()).hexdigest()
            # the file name comes from the url (or the caller): made safe, never a path of its own
            db.connection()  # the store folder exists (and is checked) before anything goes into it
            folder = contained.private_dirs(db.root, ("cache", "http", key))
            target = folder / contained.file_name_for(name or os.path.basename(parsed.path), fallback="download")
            if os.path.lexists(target) and not force_download:
                if os.path.islink(target):
                    raise UnsafePath(f"StorageManager.get_local_copy: {target} is a symbolic link; remove it")
                return str(target)
            tmp = contained.temp_name(folder)
            from urllib.request import urlopen

            try:
                with urlopen(url, timeout=60) as resp:
                    contained.write_new_file(tmp, resp)
            except OSError as exc:
                tmp.unlink(missing_ok=True)
                raise FileNotFoundError(f"StorageManager.get_local_copy: cannot download {url}: {exc}") from None
            os.replace(tmp, target)
            if extract_archive and zipfile.is_zipfile(target):
                out = folder / contained.file_name_for(target.stem, "_extracted", fallback="download")
                if not os.path.lexists(out):
                    part = contained.temp_name(folder)
                    try:
                        contained.extract_zip(target, part, what=f"StorageManager.get_local_copy({url})")
                        os.replace(part, out)
                    finally:
                        if os.path.isdir(part):
                            shutil.rmtree(part, ignore_errors=True)
                return str(out)
            return str(target)
        raise ValueError(f"StorageManager: unsupported url scheme {parsed.scheme!r} in {url}; labpipe handles local paths, file://, http(s):// and labpipe://")

    @staticmethod
    def _labpipe_copy(db, digest: str, filename: str, extract_archive: bool) -> str:
        from . import artifacts as _artifacts

        row = db.query_one("SELECT kind, filename FROM artifacts WHERE hash = ? LIMIT 1", (digest,))
        if row is not None:
            kind, fname = row["kind"], row["filename"]
        else:
            model = db.query_one("SELECT filename FROM models WHERE hash = ? LIMIT 1", (digest,))
            if model is None:
                raise ArtifactError(f"labpipe://{digest}/{filename}: no artifact or model in the store {db.root} has this content")
            kind = "folder" if model["filename"].endswith("/") else "file"
            fname = model["filename"].rstrip("/")
        if kind == "folder" and not extract_archive:
            kind, fname = "file", contained.file_name_for(fname, ".zip", fallback=digest)
        elif kind not in ("file", "folder"):
            kind = "file"  # a pickle or .npy: hand out the file itself
        return str(_artifacts.materialize(db, digest, kind, fname or filename, what=f"labpipe://{digest}"))

    @classmethod
    def upload_file(cls, local_file: str, remote_url: str, wait_for_upload: bool = True, **_ignored) -> str:
        """Copy a local file to `remote_url` (a local path or file:// URL); returns the url."""
        target = _local_path(remote_url)
        if target is None:
            raise ValueError(f"StorageManager.upload_file: labpipe can only upload to local paths or file:// URLs, not {remote_url}")
        if not os.path.isfile(local_file):
            raise FileNotFoundError(f"StorageManager.upload_file: {local_file} is not a file")
        if str(remote_url).endswith("/") or target.is_dir():
            target = target / os.path.basename(local_file)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(local_file, target)
        return str(remote_url)

    @classmethod
    def upload_folder(cls, local_folder: str, remote_url: str, **_ignored) -> str:
        """Copy a folder's contents under `remote_url` (a local path or file:// URL)."""
        target = _local_path(remote_url)
        if target is None:
            raise ValueError(f"StorageManager.upload_folder: labpipe can only upload to local paths or file:// URLs, not {remote_url}")
        shutil.copytree(local_folder, target, dirs_exist_ok=True)
        return str(remote_url)

    @classmethod
    def download_file(cls, remote_url: str, local_folder: str | None = None, overwrite: bool = False, **_ignored) -> str:
        """Copy `remote_url` into `local_folder` (default: the cache); returns the local path."""
        src = Path(cls.get_local_copy(remote_url, extract_archive=False))
        if local_folder is None:
            return str(src)
        dst = Path(local_folder) / src.name
        if dst.exists() and not overwrite:
            return str(dst)
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)
        return str(dst)
