"""ClearML Data's `Dataset`: versioned collections of files, kept in the store, as tasks.

    ds = Dataset.create(dataset_name="raw", dataset_project="data")
    ds.add_files("data/")                      # hashed and stored at once (content-addressed, deduplicated)
    ds.upload(); ds.finalize()
    path = Dataset.get(dataset_project="data", dataset_name="raw").get_local_copy()   # read-only, cached

A dataset is a task (type data_processing, system tag `dataset`): its status is the dataset's state
(created while it is a draft, completed once finalized), its project and tags are the task's. Each
file's bytes are a blob of the store, so a file shared by many versions or datasets is stored once,
and small files live inside SQLite (adding 10,000 small files is one transaction). A child made with
`parent_datasets=` starts with its parents' files and records only its changes.

Differences from ClearML, and why: there is no separate upload step (`add_files` makes the bytes
durable in the store at once, so `upload()` has nothing left to do and `finalize()` never reports
pending uploads); `output_uri`, compression and chunk sizes have no meaning for a local store.
"""

from __future__ import annotations

import fnmatch
import logging
import os
import shutil
import stat
from collections.abc import Iterable, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

from . import contained, names
from .config import INLINE_BLOB_MAX
from .errors import DatasetError
from .offline import install_on
from .store import blobs
from .store import datasets as store
from .store.db import Database, get_database
from .versions import DEFAULT_VERSION, next_version, version_key

log = logging.getLogger(__name__)

_COMPLETE_MARK = ".labpipe-complete"


def _dataset_path(path: str, what: str) -> str:
    """A path inside a dataset: relative, '/'-separated, with no '..' and no empty name."""
    text = str(path).replace("\\", "/")
    if "\x00" in text:
        raise DatasetError(f"{what}: the path {path!r} contains a NUL character")
    parts = [p for p in PurePosixPath(text).parts if p not in ("/", ".")]
    if not parts or any(p == ".." for p in parts):
        raise DatasetError(f"{what}: {path!r} is not a path inside the dataset (relative, without '..')")
    return "/".join(parts)


class Dataset:
    """A versioned set of files. Make one with `Dataset.create`, find one with `Dataset.get`."""

    def __init__(self, row: store.DatasetRow, db: Database):
        self._row = row
        self._db = db

    def __repr__(self) -> str:
        return f"<Dataset {self.id} {self.project}/{self.name} v{self.version} ({'final' if self.is_final() else 'draft'})>"

    # -- finding and creating --------------------------------------------------------------

    @classmethod
    def create(cls, dataset_name: str | None = None, dataset_project: str | None = None,
               dataset_tags: Sequence[str] | None = None, parent_datasets: Sequence[str | Dataset] | None = None,
               use_current_task: bool = False, dataset_version: str | None = None, output_uri: str | None = None,
               description: str | None = None) -> Dataset:
        """A new draft dataset.

        dataset_name, dataset_project: its name and project (the project defaults to the first parent's).
        parent_datasets: ids (or Datasets) of finalized datasets whose files it starts with; where two
        parents hold the same path, the later one's file is kept.
        dataset_version: its version; by default the latest version of this name in this project, with its
        last number incremented ('1.0.0' -> '1.0.1'), or '1.0.0' for the first.
        use_current_task: name it after `Task.current_task()` when no name is given.
        output_uri: accepted for ClearML scripts; the files always go into the store.
        """
        from .task import Task

        db = get_database()
        current = Task.current_task()
        if use_current_task and current is not None:
            dataset_name = dataset_name or current.name
            dataset_project = dataset_project or current.project
        parents = [cls._parent(db, p) for p in (parent_datasets or [])]
        if not dataset_project and parents:
            dataset_project = parents[0].project
        if not dataset_name:
            raise DatasetError("Dataset.create needs dataset_name= (and dataset_project=, unless a parent gives it)")
        if dataset_project is None:
            raise DatasetError(f"Dataset.create({dataset_name!r}) needs dataset_project= (or parent_datasets= to take it from)")
        name = names.check_label(dataset_name, kind="dataset", where="Dataset.create", allow_empty=False)
        project = names.check_label(dataset_project, kind="project", where="Dataset.create")
        if dataset_version is None:
            versions = [d.version for d, _, _ in store.find_datasets(db, project=project, name=name)]
            dataset_version = next_version(max(versions, key=version_key)) if versions else DEFAULT_VERSION
        elif store.find_datasets(db, project=project, name=name, version=str(dataset_version)):
            raise DatasetError(f"dataset {project}/{name} already has a version {dataset_version!r}; "
                               "choose another version, or leave dataset_version out to get the next one")
        task = store.create_dataset(db, name=name, project=project, version=str(dataset_version),
                                    parents=[p.id for p in parents], description=description or "",
                                    tags=list(dataset_tags or []), parent_task=current.id if current else None)
        return cls(store.get_dataset(db, task.id), db)

    @classmethod
    def _parent(cls, db: Database, parent: str | Dataset) -> Dataset:
        ds = parent if isinstance(parent, Dataset) else cls._by_id(db, str(parent), "parent_datasets")
        if not ds.is_final():
            raise DatasetError(f"parent dataset {ds.id} ({ds.project}/{ds.name} v{ds.version}) is not finalized; "
                               "call finalize() on it before using it as a parent")
        return ds

    @classmethod
    def _by_id(cls, db: Database, dataset_id: str, what: str) -> Dataset:
        from .errors import TaskNotFound
        from .store import tasks

        try:
            task_id = tasks.get_task(db, dataset_id).id  # takes a unique id prefix too
        except TaskNotFound as exc:
            raise DatasetError(f"{what}: {exc}{cls._close_ids(db, dataset_id)}") from None
        row = store.get_dataset(db, task_id)
        if row is None:
            raise DatasetError(f"{what}: task {task_id} is not a dataset")
        return cls(row, db)

    @classmethod
    def get(cls, dataset_id: str | None = None, dataset_project: str | None = None, dataset_name: str | None = None,
            dataset_tags: Sequence[str] | None = None, only_completed: bool = False, only_published: bool = False,
            include_archived: bool = False, auto_create: bool = False, writable_copy: bool = False,
            dataset_version: str | None = None, alias: str | None = None, overridable: bool = False,
            shallow_search: bool = False, **kwargs: Any) -> Dataset:
        """A dataset by id, or by project and name: the highest version (or `dataset_version`).

        only_completed: only finalized datasets. dataset_tags: only datasets having all these tags.
        auto_create: create it (a draft) when none matches. writable_copy: a new draft child of the found
        dataset, to add to. An unknown name says so and lists close matches.
        """
        from .task import Task

        db = get_database()
        if dataset_id:
            found = cls._by_id(db, str(dataset_id), "Dataset.get")
        else:
            if not dataset_name and not dataset_project:
                raise DatasetError("Dataset.get needs dataset_id=, or dataset_name= (with dataset_project=)")
            rows = store.find_datasets(db, project=dataset_project, name=dataset_name, version=dataset_version,
                                       only_completed=only_completed or only_published, include_archived=include_archived)
            if dataset_tags:
                wanted = set(dataset_tags)
                rows = [r for r in rows if wanted <= set(Task.get_task(task_id=r[0].id).get_tags())]
            if only_published:
                rows = [r for r in rows if r[1] == "published"]
            if not rows:
                if auto_create and dataset_name:
                    return cls.create(dataset_name=dataset_name, dataset_project=dataset_project or "", dataset_tags=dataset_tags)
                raise DatasetError(cls._not_found(db, dataset_project, dataset_name, dataset_version, only_completed))
            best = max(rows, key=lambda r: (version_key(r[0].version), r[0].created))
            found = cls(best[0], db)
        if writable_copy:
            return cls.create(dataset_name=found.name, dataset_project=found.project, parent_datasets=[found])
        return found

    @staticmethod
    def _close_ids(db: Database, dataset_id: str) -> str:
        """'; close matches: <id> (project/name vN), ...' for a dataset id that is not there (a typo), else ''."""
        import difflib

        known = {row.id: row for row, _status, _archived in store.find_datasets(db)}
        close = difflib.get_close_matches(str(dataset_id), list(known), n=5, cutoff=0.6)
        if not close:
            return ""
        return "; close matches: " + ", ".join(f"{i} ({known[i].project}/{known[i].name} v{known[i].version})" for i in close)

    @staticmethod
    def _not_found(db: Database, project: str | None, name: str | None, version: str | None, only_completed: bool) -> str:
        import difflib

        what = "/".join(x for x in (project, name) if x) + (f" version {version}" if version else "")
        state = " finalized" if only_completed else ""
        known = [f"{p}/{n}" for p, n in store.dataset_names(db)]
        close = difflib.get_close_matches("/".join(x for x in (project, name) if x), known, n=5, cutoff=0.5)
        hint = f"; close matches: {', '.join(close)}" if close else (f"; datasets here: {', '.join(sorted(known)[:10])}" if known else "")
        return f"no{state} dataset {what} in the store {db.root}{hint}"

    @classmethod
    def list_datasets(cls, dataset_project: str | None = None, partial_name: str | None = None,
                      tags: Sequence[str] | None = None, ids: Sequence[str] | None = None, only_completed: bool = True,
                      recursive_project_search: bool = True, include_archived: bool = True) -> list[dict]:
        """Datasets as dicts (id, name, project, version, status, tags, created, files, size), newest first."""
        from .task import Task

        db = get_database()
        out = []
        rows = store.find_datasets(db, only_completed=only_completed, include_archived=include_archived)
        counts = store.stats(db, [r[0].id for r in rows])
        for row, status, _archived in rows:
            if dataset_project is not None and not (row.project == dataset_project or (
                    recursive_project_search and row.project.startswith(dataset_project.rstrip("/") + "/"))):
                continue
            if partial_name and partial_name.lower() not in row.name.lower():
                continue
            if ids and row.id not in ids:
                continue
            task_tags = Task.get_task(task_id=row.id).get_tags() if tags else []
            if tags and not set(tags) <= set(task_tags):
                continue
            files, size = counts.get(row.id, (0, 0))
            out.append({"id": row.id, "name": row.name, "project": row.project, "version": row.version, "status": status,
                        "tags": task_tags, "created": row.created, "parents": row.parents, "files": files, "size": size})
        return out

    # -- what it is ----------------------------------------------------------------------------

    @property
    def id(self) -> str:
        return self._row.id

    @property
    def name(self) -> str:
        return self._row.name

    @property
    def project(self) -> str:
        return self._row.project

    @property
    def version(self) -> str:
        return self._row.version

    @property
    def tags(self) -> list[str]:
        return self._task().get_tags()

    @tags.setter
    def tags(self, values: Sequence[str]) -> None:
        self._task().set_tags(values)

    @property
    def parents(self) -> list[str]:
        return list(self._row.parents)

    def _task(self):
        from .task import Task

        return Task.get_task(task_id=self.id)

    def is_final(self) -> bool:
        """Whether it was finalized (its files can no longer change)."""
        return self._task().status in ("completed", "published")

    def get_logger(self):
        """The Logger of the dataset's task (report statistics, previews, ...)."""
        return self._task().get_logger()

    def get_dependency_graph(self) -> dict[str, list[str]]:
        """{dataset id: [parent ids]} for this dataset and all its ancestors."""
        graph, todo = {}, [self.id]
        while todo:
            ds_id = todo.pop()
            if ds_id in graph:
                continue
            row = store.get_dataset(self._db, ds_id)
            graph[ds_id] = list(row.parents) if row else []
            todo.extend(graph[ds_id])
        return graph

    # -- files -------------------------------------------------------------------------------

    @property
    def file_entries(self) -> list[store.FileEntry]:
        return store.files(self._db, self.id)

    @property
    def file_entries_dict(self) -> dict[str, store.FileEntry]:
        return {e.path: e for e in self.file_entries}

    def list_files(self, dataset_path: str | None = None, recursive: bool = True, dataset_id: str | None = None) -> list[str]:
        """The paths of its files, sorted; dataset_path: a wildcard ('images/*.png') or a folder to list."""
        entries = (Dataset._by_id(self._db, dataset_id, "list_files") if dataset_id else self).file_entries
        return [e.path for e in entries if _matches(e.path, dataset_path, recursive)]

    def _parents_files(self) -> dict[str, store.FileEntry]:
        merged: dict[str, store.FileEntry] = {}
        for parent in self._row.parents:
            merged.update({e.path: e for e in store.files(self._db, parent)})
        return merged

    def list_added_files(self, dataset_id: str | None = None) -> list[str]:
        """Paths this dataset added (its parents do not hold them)."""
        ds = Dataset._by_id(self._db, dataset_id, "list_added_files") if dataset_id else self
        before = ds._parents_files()
        return [e.path for e in ds.file_entries if e.path not in before]

    def list_modified_files(self, dataset_id: str | None = None) -> list[str]:
        """Paths its parents hold with other content."""
        ds = Dataset._by_id(self._db, dataset_id, "list_modified_files") if dataset_id else self
        before = ds._parents_files()
        return [e.path for e in ds.file_entries if e.path in before and before[e.path].hash != e.hash]

    def list_removed_files(self, dataset_id: str | None = None) -> list[str]:
        """Paths its parents hold that it does not."""
        ds = Dataset._by_id(self._db, dataset_id, "list_removed_files") if dataset_id else self
        now = {e.path for e in ds.file_entries}
        return sorted(p for p in ds._parents_files() if p not in now)

    def _draft(self, call: str) -> None:
        if self.is_final():
            raise DatasetError(f"dataset {self.id} ({self.project}/{self.name} v{self.version}) is finalized; {call} needs "
                               f"a draft: make a new version with Dataset.create(parent_datasets=['{self.id}'])")

    def add_files(self, path: str | os.PathLike, wildcard: str | Sequence[str] | None = None,
                  local_base_folder: str | None = None, dataset_path: str | None = None, recursive: bool = True,
                  verbose: bool = False, max_workers: int | None = None) -> int:
        """Add a file, or a folder's files, and return how many were added or changed.

        wildcard: only file names matching it (or any of a list). dataset_path: the folder inside the
        dataset to put them in. local_base_folder: the folder the kept paths are relative to (default:
        `path` itself for a folder, its parent for a file). The bytes are stored at once; if anything
        fails, nothing is added.
        """
        self._draft("add_files")
        source = Path(path).expanduser()
        what = f"dataset {self.project}/{self.name}: add_files({str(path)!r})"
        if not source.exists():
            raise DatasetError(f"{what}: no such file or folder")
        base = os.path.abspath(local_base_folder if local_base_folder else (source if source.is_dir() else source.parent))
        prefix = _dataset_path(dataset_path, what) + "/" if dataset_path not in (None, "", ".", "/") else ""
        patterns = [wildcard] if isinstance(wildcard, str) else list(wildcard or [])
        current = {e.path: e.hash for e in self.file_entries}
        entries = []
        # one fsync per blob folder for the whole batch, before the one commit below names them
        with blobs.landing():
            # Plain strings and os calls, not pathlib: at 10,000 files pathlib's parsing was half the time.
            for file, size, mode in _walk(os.path.abspath(source), recursive):
                if patterns and not any(fnmatch.fnmatch(os.path.basename(file), p) for p in patterns):
                    continue
                if not file.startswith(base + os.sep):
                    raise DatasetError(f"{what}: {file} is not inside local_base_folder {base}")
                rel = file[len(base) + 1:]
                inside = prefix + (rel if os.sep == "/" else rel.replace(os.sep, "/"))
                if ".." in inside.split("/"):
                    inside = _dataset_path(inside, what)
                try:
                    ref = _store_file(self._db, file, size)
                except OSError as exc:
                    raise DatasetError(f"{what}: cannot read {file}: {exc.strerror or exc}") from None
                old = current.get(inside)
                if old == ref.hash:
                    continue
                entries.append((store.FileEntry(inside, ref.hash, ref.size, mode, self.id), ref))
                if verbose:
                    log.info("%s: %s %s", self.name, "modified" if old else "added", inside)
        store.put_files(self._db, self.id, entries)
        return len(entries)

    def remove_files(self, dataset_path: str | None = None, recursive: bool = True, verbose: bool = False) -> int:
        """Remove the files matching `dataset_path` (a path, a folder or a wildcard); returns how many."""
        self._draft("remove_files")
        if not dataset_path:
            raise DatasetError(f"dataset {self.project}/{self.name}: remove_files needs dataset_path= (a path, folder or wildcard)")
        paths = [e.path for e in self.file_entries if _matches(e.path, dataset_path, recursive)]
        return store.remove_files(self._db, self.id, paths)

    def sync_folder(self, local_path: str | os.PathLike, dataset_path: str | None = None, verbose: bool = False) -> tuple[int, int]:
        """Make the dataset (or its `dataset_path` folder) hold exactly the folder's files: returns
        (files removed, files added or modified)."""
        self._draft("sync_folder")
        folder = Path(local_path).expanduser()
        if not folder.is_dir():
            raise DatasetError(f"dataset {self.project}/{self.name}: sync_folder({str(local_path)!r}): no such folder")
        prefix = _dataset_path(dataset_path, "sync_folder") + "/" if dataset_path not in (None, "", ".", "/") else ""
        root = os.path.abspath(folder)
        there = {f[len(root) + 1:].replace(os.sep, "/") for f, _, _ in _walk(root, True)}
        gone = [e.path for e in self.file_entries if e.path.startswith(prefix) and e.path[len(prefix):] not in there]
        removed = store.remove_files(self._db, self.id, gone)
        added = self.add_files(folder, dataset_path=dataset_path, verbose=verbose)
        return removed, added

    def upload(self, show_progress: bool = True, verbose: bool = False, output_url: str | None = None,
               compression: Any = None, chunk_size: int | None = None, max_workers: int | None = None, retries: int = 3) -> None:
        """Nothing left to do: `add_files` stored the bytes already (kept for ClearML scripts)."""
        self._draft("upload")

    def finalize(self, verbose: bool = False, raise_on_error: bool = True, auto_upload: bool = False) -> bool:
        """Close the dataset: its files can no longer change, and it can be a parent and be copied locally."""
        from .errors import IllegalTransition

        self._draft("finalize")
        try:  # one checked transition: of two processes finalizing at once, one wins and one is told
            self._task().mark_completed(status_message=f"dataset finalized: {len(self.file_entries)} files")
        except IllegalTransition:
            self._draft("finalize")
            raise
        return True

    def publish(self, raise_on_error: bool = True) -> bool:
        """Publish a finalized dataset (ClearML's last state; `Dataset.get(only_published=True)` finds it)."""
        if not self.is_final():
            raise DatasetError(f"dataset {self.id} is not finalized; finalize() it before publishing")
        self._task().publish()
        return True

    def verify_dataset_hash(self, local_copy_path: str | None = None, skip_hash: bool = False, verbose: bool = False) -> list[str]:
        """Paths whose stored bytes (or, with local_copy_path, whose copy there) no longer match; [] when all do."""
        bad = []
        for entry in self.file_entries:
            if local_copy_path:
                copy = Path(local_copy_path) / entry.path
                ok = copy.is_file() and copy.stat().st_size == entry.size and (skip_hash or _hash_file(copy) == entry.hash)
            else:
                try:
                    blobs.read(self._db, entry.hash, what=f"file {entry.path} of dataset {self.id}")
                    ok = True
                except Exception:
                    ok = False
            if not ok:
                bad.append(entry.path)
        return bad

    # -- copies --------------------------------------------------------------------------------

    def get_local_copy(self, use_soft_links: bool | None = None, part: int | None = None, num_parts: int | None = None,
                       raise_on_error: bool = True, max_workers: int | None = None) -> str:
        """A read-only local folder with the dataset's files, made once and then served from the cache."""
        if not self.is_final():
            raise DatasetError(f"dataset {self.id} ({self.project}/{self.name}) is not finalized; a local copy needs a "
                               "finalized dataset (call finalize()), or use get_mutable_local_copy(target_folder)")
        target = self._db.root / "cache" / "datasets" / self.id
        if (target / _COMPLETE_MARK).is_file():
            return str(target)
        contained.private_dirs(self._db.root, ["cache", "datasets"])  # 0700, never through a link
        tmp = target.parent / f".tmp-{self.id}-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            self._copy_into(tmp, read_only=True)
            (tmp / _COMPLETE_MARK).touch(mode=0o600)
            try:
                os.rename(tmp, target)
            except OSError:  # another process made it first (or an unfinished copy is in the way)
                if not (target / _COMPLETE_MARK).is_file():
                    shutil.rmtree(target, ignore_errors=True)
                    os.rename(tmp, target)
        finally:
            if tmp.exists():
                _rmtree(tmp)
        return str(target)

    def get_mutable_local_copy(self, target_folder: str | os.PathLike, overwrite: bool = False, part: int | None = None,
                               num_parts: int | None = None, raise_on_error: bool = True, max_workers: int | None = None) -> str:
        """Copy the dataset's files into `target_folder` (which must be empty or missing, unless overwrite=True)."""
        target = Path(target_folder).expanduser()
        if target.exists() and not target.is_dir():
            raise DatasetError(f"get_mutable_local_copy: {target} is a file, not a folder")
        if target.is_dir() and any(target.iterdir()):
            if not overwrite:
                raise DatasetError(f"get_mutable_local_copy: {target} is not empty; pass overwrite=True to replace its contents")
            _rmtree(target)
        target.mkdir(parents=True, exist_ok=True)
        self._copy_into(target, read_only=False)
        return str(target)

    def _copy_into(self, folder: Path, read_only: bool) -> None:
        entries = self.file_entries
        inline = store.inline_bytes(self._db, [e.hash for e in entries if e.size <= INLINE_BLOB_MAX])
        root = os.path.abspath(folder)
        os.makedirs(root, mode=0o700, exist_ok=True)
        made = {root}
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
        for entry in entries:
            parts = entry.path.split("/")
            if "" in parts or "." in parts or ".." in parts or "\x00" in entry.path:  # a row written by someone else
                raise DatasetError(f"dataset {self.id}: its file entry {entry.path!r} is not a path inside the dataset; "
                                   "the copy was stopped before writing it")
            out = os.path.join(root, *parts)
            parent = os.path.dirname(out)
            if parent not in made:
                os.makedirs(parent, mode=0o700, exist_ok=True)
                made.add(parent)
            data = blobs.read(self._db, entry.hash, what=f"file {entry.path} of dataset {self.id}", inline=inline.get(entry.hash))
            mode = entry.mode & (0o555 if read_only else 0o777) | (0o400 if read_only else 0o600)
            fd = os.open(out, flags, mode)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
            finally:
                os.close(fd)

    # -- deleting ------------------------------------------------------------------------------

    @classmethod
    def delete(cls, dataset_id: str | None = None, dataset_project: str | None = None, dataset_name: str | None = None,
               force: bool = False, dataset_version: str | None = None, entire_dataset: bool = False,
               shallow_search: bool = False, delete_files: bool = True, delete_external_files: bool = False) -> None:
        """Delete a dataset (all versions of the name with entire_dataset=True); its bytes go at the next `labpipe gc`.

        A dataset that others use as a parent is kept unless force=True.
        """
        db = get_database()
        if dataset_id:
            targets = [cls._by_id(db, dataset_id, "Dataset.delete")]
        else:
            rows = store.find_datasets(db, project=dataset_project, name=dataset_name, version=dataset_version)
            if not rows:
                raise DatasetError(cls._not_found(db, dataset_project, dataset_name, dataset_version, False))
            rows = rows if entire_dataset else [max(rows, key=lambda r: (version_key(r[0].version), r[0].created))]
            targets = [cls(r[0], db) for r in rows]
        doomed = {t.id for t in targets}
        for other, _, _ in store.find_datasets(db):
            users = doomed & set(other.parents)
            if users and other.id not in doomed and not force:
                raise DatasetError(f"dataset {sorted(users)[0]} is a parent of dataset {other.id} ({other.project}/{other.name} "
                                   f"v{other.version}); delete that one first, or pass force=True")
        for t in targets:
            t._task().delete()
        cache = db.root / "cache" / "datasets"
        for t in targets:
            if (cache / t.id).exists():
                _rmtree(cache / t.id)

    # -- the rest of ClearML's Dataset names that mean something offline --------------------
    # (the names that do not are in labpipe/offline.py, and raise NotImplementedError saying why)

    def add_tags(self, tags: str | Sequence[str]) -> None:
        """Add tags to the dataset (its task's tags)."""
        self._task().add_tags(tags)

    @staticmethod
    def is_offline() -> bool:
        """False: labpipe's datasets are in its store at once; there is no ClearML offline session to import."""
        return False

    def is_dirty(self) -> bool:
        """False: `add_files` stores the bytes at once, so nothing ever waits to be uploaded."""
        return False

    @property
    def link_entries(self) -> list:
        """[]: labpipe datasets hold copies of their files, never links to external storage."""
        return []

    @property
    def link_entries_dict(self) -> dict:
        """{}: labpipe datasets hold copies of their files, never links to external storage."""
        return {}

    def set_metadata(self, metadata: Any, metadata_name: str = "metadata", ui_visible: bool = True) -> None:
        """Keep `metadata` (a table, dict, ...) with the dataset, as an artifact of its task named `metadata_name`."""
        self._task().upload_artifact(metadata_name, metadata)

    def get_metadata(self, metadata_name: str = "metadata") -> Any:
        """The metadata stored with `set_metadata` under `metadata_name`, or None."""
        artifact = self._task().artifacts.get(metadata_name)
        return artifact.get() if artifact is not None else None


def _walk(source: str, recursive: bool) -> Iterable[tuple[str, int, int]]:
    """(path, size, permission bits) of each regular file under `source` (or `source` itself), sorted."""
    st = os.stat(source)
    if stat.S_ISREG(st.st_mode):
        yield source, st.st_size, stat.S_IMODE(st.st_mode)
        return
    for dirpath, dirs, file_names in os.walk(source):
        dirs.sort()
        if not recursive:
            dirs.clear()
        for name in sorted(file_names):
            file = os.path.join(dirpath, name)
            st = os.stat(file)
            if stat.S_ISREG(st.st_mode):
                yield file, st.st_size, stat.S_IMODE(st.st_mode)
            else:  # a FIFO, socket or device: reading one could block or never end
                log.warning("%s: skipping %s: not a regular file", source, file)


def _matches(path: str, pattern: str | None, recursive: bool) -> bool:
    if not pattern or pattern in (".", "/", "*"):
        return recursive or "/" not in path
    pattern = pattern.strip("/")
    if path == pattern or fnmatch.fnmatch(path, pattern):
        return True
    if path.startswith(pattern + "/"):  # a folder: its files (and, when recursive, its sub-folders')
        return recursive or "/" not in path[len(pattern) + 1:]
    return recursive and fnmatch.fnmatch(path.rsplit("/", 1)[-1], pattern) and "/" not in pattern


def _store_file(db: Database, file: str, size: int) -> blobs.BlobRef:
    if size <= INLINE_BLOB_MAX:
        fd = os.open(file, os.O_RDONLY)
        try:
            data = os.read(fd, size + 1)
        finally:
            os.close(fd)
        return blobs.prepare(db, [data])
    return blobs.prepare_file(db, file, what=f"dataset file {file}")


def _hash_file(path: Path) -> str:
    import xxhash

    hasher = xxhash.xxh3_128()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            hasher.update(chunk)
    return hasher.hexdigest()


def _rmtree(path: Path) -> None:
    """Remove a folder even where its files were made read-only."""
    import sys

    def unlock(func, target, *_exc):
        os.chmod(os.path.dirname(target), 0o700)
        if not os.path.islink(target):
            os.chmod(target, 0o700)
        func(target)

    if sys.version_info >= (3, 12):
        shutil.rmtree(path, onexc=unlock)
    else:
        shutil.rmtree(path, onerror=unlock)


# ClearML names with no offline meaning raise NotImplementedError saying why (labpipe/offline.py)
install_on(Dataset, "Dataset")
