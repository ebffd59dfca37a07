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
from .offline import install_on
from .store import outputs
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

        named = outputs.content_named(db, digest)
        if named is None:
            raise ArtifactError(f"labpipe://{digest}/{filename}: no artifact or model in the store {db.root} has this content")
        kind, fname = named
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

    # -- the rest of ClearML's StorageManager names that mean something offline --------------
    # (the names that do not are in labpipe/offline.py, and raise NotImplementedError saying why)

    @classmethod
    def exists_file(cls, remote_url: str) -> bool:
        """Whether `remote_url` names an existing file: a local path, file://, labpipe:// or http(s):// (asked with HEAD)."""
        local = _local_path(remote_url)
        if local is not None:
            return local.is_file()
        parsed = urllib.parse.urlparse(str(remote_url))
        if parsed.scheme == "labpipe":
            try:
                return os.path.isfile(cls.get_local_copy(str(remote_url), extract_archive=False))
            except ArtifactError:
                return False
        return _http_size(str(remote_url), "exists_file") is not None

    @classmethod
    def get_file_size_bytes(cls, remote_url: str, silence_errors: bool = False) -> int | None:
        """The size of the file `remote_url` names, in bytes (None when it cannot be known and silence_errors)."""
        local = _local_path(remote_url)
        parsed = urllib.parse.urlparse(str(remote_url))
        if local is not None:
            size = local.stat().st_size if local.is_file() else None
        elif parsed.scheme == "labpipe":
            try:  # a verified copy in the store's cache: its size is the stored content's
                size = os.path.getsize(cls.get_local_copy(str(remote_url), extract_archive=False))
            except ArtifactError:
                size = None
        else:
            size = _http_size(str(remote_url), "get_file_size_bytes")
        if size is None and not silence_errors:
            raise FileNotFoundError(f"StorageManager.get_file_size_bytes: {remote_url} is not a file labpipe can reach")
        return size

    @classmethod
    def get_metadata(cls, remote_url: str, return_full_path: bool = False) -> dict | None:
        """{'name', 'size'} of a local file (or file:// URL); None when there is no such file."""
        local = _local_path(remote_url)
        if local is None:
            cls._local_only(remote_url, "get_metadata")
        if not local.is_file():
            return None
        return {"name": str(local) if return_full_path else local.name, "size": local.stat().st_size}

    @classmethod
    def list(cls, remote_url: str, return_full_path: bool = False, with_metadata: bool = False) -> list:
        """The files under a local folder (or file:// URL), sorted: paths relative to it (return_full_path:
        as full paths), or with_metadata: dicts of 'name' and 'size'."""
        local = _local_path(remote_url)
        if local is None:
            cls._local_only(remote_url, "list")
        if not local.is_dir():
            raise FileNotFoundError(f"StorageManager.list: {remote_url} is not a folder")
        found = sorted(p for p in local.rglob("*") if p.is_file())
        names = [str(p) if return_full_path else p.relative_to(local).as_posix() for p in found]
        if with_metadata:
            return [{"name": n, "size": p.stat().st_size} for n, p in zip(names, found, strict=True)]
        return names

    @classmethod
    def download_folder(cls, remote_url: str, local_folder: str | None = None, match_wildcard: str | None = None,
                        overwrite: bool = False, skip_zero_size_check: bool = False, silence_errors: bool = False,
                        max_workers: int | None = None) -> str | None:
        """Copy the files under a local folder (or file:// URL) into `local_folder` (default: a folder in
        the store's cache), keeping their relative paths; match_wildcard: only files whose name matches."""
        import fnmatch

        local = _local_path(remote_url)
        if local is None:
            cls._local_only(remote_url, "download_folder")
        if not local.is_dir():
            if silence_errors:
                return None
            raise FileNotFoundError(f"StorageManager.download_folder: {remote_url} is not a folder")
        if local_folder is None:
            db = get_database()
            db.connection()
            key = xxhash.xxh3_128(str(local.resolve()).encode()).hexdigest()
            target = contained.private_dirs(db.root, ("cache", "folders", key))
        else:
            target = Path(local_folder)
            target.mkdir(parents=True, exist_ok=True)
        for rel in cls.list(str(local)):
            if match_wildcard and not fnmatch.fnmatch(rel.rsplit("/", 1)[-1], match_wildcard):
                continue
            dst = target / rel
            if dst.exists() and not overwrite:
                continue
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(local / rel, dst)
        return str(target)

    @classmethod
    def set_report_upload_chunk_size(cls, chunk_size_mb: int) -> None:
        """Accepted and unused: labpipe's copies are local and report no progress, so there is nothing to tune."""

    @classmethod
    def set_report_download_chunk_size(cls, chunk_size_mb: int) -> None:
        """Accepted and unused: labpipe's copies are local and report no progress, so there is nothing to tune."""

    @staticmethod
    def _local_only(remote_url: str, call: str) -> None:
        raise ValueError(f"StorageManager.{call}: labpipe reads only local paths and file:// URLs here, not {remote_url}; "
                         f"there is no object store (s3://, gs://, azure://) offline")


def _http_size(url: str, call: str) -> int | None:
    """An http(s) file's Content-Length (None when it does not exist); other schemes are refused."""
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme not in ("http", "https"):
        raise ValueError(f"StorageManager.{call}: unsupported url scheme {parsed.scheme!r} in {url}; labpipe handles "
                         f"local paths, file://, http(s):// and labpipe://")
    from urllib.error import HTTPError
    from urllib.request import Request, urlopen

    try:
        with urlopen(Request(url, method="HEAD"), timeout=30) as resp:
            length = resp.headers.get("Content-Length")
            return int(length) if length is not None else 0
    except HTTPError as exc:
        if exc.code == 404:
            return None
        raise


# ClearML names with no offline meaning raise NotImplementedError saying why (labpipe/offline.py)
install_on(StorageManager, "StorageManager")
