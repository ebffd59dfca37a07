"""Models (ClearML's `Model`, `InputModel`, `OutputModel`): weights files recorded on tasks.

An output model is a row of the `models` table naming the task that made it and its weights blob.
A task's input models (`task.connect(InputModel(...))`) are recorded in the task's definition
(`script["input_models"]`: {name: model id}), so a clone keeps them and may point one at another
model, which the script then receives when a worker runs it, as ClearML does.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from . import artifacts as _artifacts
from . import names as _names
from .errors import ArtifactError
from .offline import install_on
from .store import outputs
from .store.blobs import BlobRef

if TYPE_CHECKING:
    from .store.db import Database
    from .task import Task


def _db() -> Database:
    from .store.db import get_database

    return get_database()


def _cast(entry: dict) -> Any:
    """A metadata entry's value as its recorded type (ClearML stores every value as text)."""
    value, kind = entry.get("value"), entry.get("type")
    try:
        if kind == "bool":
            return str(value).strip().lower() in ("1", "true", "yes", "on")
        if kind in ("int", "float"):
            return {"int": int, "float": float}[kind](value)
    except (TypeError, ValueError):
        return value
    return value


class ModelMetadata:
    """ClearML's model metadata: {key: {'key', 'type', 'value'}}, values kept as text with their type's name.

    A class using it supplies `_read_user_metadata()` and `_write_user_metadata(entries)`.
    """

    def _read_user_metadata(self) -> dict[str, dict]:
        raise NotImplementedError

    def _write_user_metadata(self, entries: dict[str, dict]) -> None:
        raise NotImplementedError

    def set_metadata(self, key: str, value: Any, v_type: Any = None) -> bool:
        """Record `value` (kept as text) under `key`; v_type: its type (default: the value's own)."""
        if not isinstance(key, str) or not key:
            raise ValueError(f"model metadata keys are non-empty strings, not {key!r}")
        kind = v_type if isinstance(v_type, str) else getattr(v_type or type(value), "__name__", "str")
        self._write_user_metadata({**self._read_user_metadata(), key: {"key": key, "type": kind, "value": str(value)}})
        return True

    def get_metadata(self, key: str) -> str | None:
        """The text recorded under `key`, or None."""
        entry = self._read_user_metadata().get(key)
        return entry["value"] if entry else None

    def get_metadata_casted(self, key: str) -> Any:
        """The value recorded under `key`, as its recorded type (int, float, bool; else text), or None."""
        entry = self._read_user_metadata().get(key)
        return _cast(entry) if entry else None

    def get_all_metadata(self) -> dict[str, dict]:
        """Every entry: {key: {'key', 'type', 'value'}}."""
        return {k: dict(v) for k, v in self._read_user_metadata().items()}

    def get_all_metadata_casted(self) -> dict[str, Any]:
        """Every entry's value, as its recorded type."""
        return {k: _cast(v) for k, v in self._read_user_metadata().items()}

    def set_all_metadata(self, metadata: dict[str, Any], replace: bool = True) -> bool:
        """Record several entries ({key: {'type', 'value'}} or {key: value}); replace=True drops the others."""
        entries = {} if replace else self._read_user_metadata()
        for key, item in metadata.items():
            value, kind = (item.get("value"), item.get("type")) if isinstance(item, dict) else (item, None)
            entries[key] = {"key": key, "type": kind or type(value).__name__, "value": str(value)}
        self._write_user_metadata(entries)
        return True

    @property
    def system_tags(self) -> list[str]:
        """[]: labpipe keeps no system tags on models."""
        return []


class Model(ModelMetadata):
    """A stored model, by id (ClearML's `Model(model_id)`): id, name, task (the id of the task that made
    it), project, framework, url, tags, comment, config_dict / config_text, labels, published;
    `get_local_copy()` gives its weights file (or folder)."""

    def __init__(self, model_id: str):
        db = _db()
        row = outputs.get_model(db, str(model_id))
        if row is None:
            raise ArtifactError(f"no model with id {model_id!r} in the store {db.root}; Model.query_models() lists them")
        self._fill(row, db)

    def _fill(self, r, db: Database) -> None:
        self.id, self.name, self.task, self.framework = r["id"], r["name"], r["task"], r["framework"]
        self.hash, self.size, self.filename = r["hash"], r["size"], r["filename"]
        self.tags, self.metadata = json.loads(r["tags"]), json.loads(r["metadata"])
        self._db = db

    @classmethod
    def from_row(cls, r, db: Database) -> Model:
        """The model a stored model row describes (how a task lists its models)."""
        model = cls.__new__(cls)
        model._fill(r, db)
        return model

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.id} {self.name!r} of task {self.task}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Model) and other.id == self.id

    def __hash__(self) -> int:
        return hash(self.id)

    @property
    def url(self) -> str | None:
        return f"labpipe://{self.hash}/{self.filename.rstrip('/')}" if self.hash else None

    @property
    def project(self) -> str:
        from .store import tasks

        return tasks.get_task(self._db, self.task).project

    @property
    def comment(self) -> str:
        return self.metadata.get("comment") or ""

    @property
    def config_dict(self) -> dict:
        return dict(self.metadata.get("config_dict") or {})

    @property
    def config_text(self) -> str:
        text = self.metadata.get("config_text")
        return text if text is not None else (json.dumps(self.metadata["config_dict"], indent=2) if self.metadata.get("config_dict") else "")

    @property
    def labels(self) -> dict[str, int]:
        return dict(self.metadata.get("labels") or {})

    @property
    def published(self) -> bool:
        return bool(self.metadata.get("published"))

    def publish(self) -> None:
        """Mark the model published (`query_models(only_published=True)` finds it)."""
        self.metadata = outputs.update_model_metadata(self._db, self.id, {"published": True})

    def get_local_copy(self, extract_archive: bool = True, raise_on_error: bool = False, force_download: bool = False) -> str:
        """A local path to the model's weights file (or folder)."""
        if not self.hash:
            raise ArtifactError(f"model {self.name!r} of task {self.task} has no weights; call update_weights() first")
        kind = "folder" if self.filename.endswith("/") else "file"
        return str(_artifacts.materialize(self._db, self.hash, kind, self.filename.rstrip("/"), what=f"model {self.name!r} of task {self.task}"))

    def get_weights(self, raise_on_error: bool = False, force_download: bool = False) -> str:
        return self.get_local_copy()

    @classmethod
    def query_models(cls, project_name: str | None = None, model_name: str | None = None, tags: Sequence[str] | None = None,
                     only_published: bool = False, include_archived: bool = False, max_results: int | None = None,
                     metadata: dict[str, Any] | None = None) -> list[Model]:
        """Models, newest first, filtered as ClearML filters them.

        project_name: of the task that made them. model_name: exact name. tags: any of them (OR);
        "-tag" excludes it; a first entry "__$all" asks for all the others (AND). metadata: key/value
        pairs the model's metadata must hold. include_archived: also models of archived tasks.
        """
        db = _db()
        rows = outputs.find_models(db, project=project_name, name=model_name, include_archived=include_archived)
        found = []
        for r in rows:
            model = cls.from_row(r, db) if cls is not InputModel else InputModel.from_row(r, db)
            if tags and not _tags_match(model.tags, tags):
                continue
            if only_published and not model.published:
                continue
            if metadata and any(model.metadata.get(k) != v for k, v in metadata.items()):
                continue
            found.append(model)
            if max_results and len(found) >= max_results:
                break
        return found


    # -- the rest of ClearML's Model names that mean something offline ------------------------
    # (the names that do not are in labpipe/offline.py, and raise NotImplementedError saying why)

    def _read_user_metadata(self) -> dict[str, dict]:
        return dict(self.metadata.get("metadata") or {})

    def _write_user_metadata(self, entries: dict[str, dict]) -> None:
        self.metadata = outputs.update_model_metadata(self._db, self.id, {"metadata": entries})

    @property
    def original_task(self) -> str:
        """The id of the task that made the model (the same as `task`)."""
        return self.task

    def get_weights_package(self, return_path: bool = False, raise_on_error: bool = False, force_download: bool = False) -> Any:
        """The weights folder's files (paths), or with return_path=True the folder itself."""
        path = self.get_local_copy()
        if return_path or not os.path.isdir(path):
            return path
        return sorted(os.path.join(d, f) for d, _, files in os.walk(path) for f in files)


def _tags_match(have: Sequence[str], wanted: Sequence[str]) -> bool:
    wanted = list(wanted)
    every = bool(wanted) and wanted[0] == "__$all"
    wanted = wanted[1:] if every else wanted
    if any(t.startswith("-") and t[1:] in have for t in wanted):
        return False
    positive = [t for t in wanted if not t.startswith("-")]
    if not positive:
        return True
    return all(t in have for t in positive) if every else any(t in have for t in positive)


class InputModel(Model):
    """An existing model a task uses: by id, or the newest matching name / project / tags
    (ClearML's `InputModel(model_id=, name=, project=, tags=, only_published=)`).

    `task.connect(input_model)` (or `input_model.connect(task)`) records it on the task; run by a
    worker, the model the task's definition names (a clone may point it at another) is the one used.
    """

    def __init__(self, model_id: str | None = None, name: str | None = None, project: str | None = None,
                 tags: Sequence[str] | None = None, only_published: bool = False):
        if not model_id:
            found = Model.query_models(project_name=project, model_name=name, tags=tags, only_published=only_published)
            if not found:
                raise ArtifactError(f"no model matches name={name!r} project={project!r} tags={list(tags or [])!r}"
                                    f"{' (published only)' if only_published else ''}; Model.query_models() lists them")
            model_id = found[0].id
        super().__init__(model_id)

    def connect(self, task: Task, name: str | None = None, ignore_remote_overrides: bool = False) -> None:
        """Record this model as an input of `task` under `name` (default: its own name). Run by a worker,
        a different model recorded on the task for that name (a clone's override) replaces this one."""
        key = _names.check_label(name or self.name, kind="model", where="InputModel.connect", allow_empty=False)
        recorded = task.input_model_ids().get(key)
        if getattr(task, "_remote", False) and recorded and recorded != self.id and not ignore_remote_overrides:
            row = outputs.get_model(self._db, recorded)
            if row is None:
                raise ArtifactError(f"task {task.id}: its input model {key!r} is {recorded}, which is not in the store")
            self._fill(row, self._db)
            return
        task.set_input_model_id(key, self.id)


class OutputModel(ModelMetadata):
    """A model a task produces (ClearML's `OutputModel(task=, name=, framework=, ...)`).

    task: the task it belongs to (default: `Task.current_task()`). Call `update_weights(path)` to store
    the weights file (or folder); each call records the new weights. config_dict / config_text and
    label_enumeration are kept with the model. base_model_id: start from that model's weights and
    configuration (a fine-tuned copy), until `update_weights` stores new ones.
    """

    def __init__(self, task: Task | None = None, config_text: str | None = None, config_dict: dict | None = None,
                 label_enumeration: dict[str, int] | None = None, name: str | None = None, tags: list[str] | None = None,
                 comment: str | None = None, framework: str | None = None, base_model_id: str | None = None, **_ignored: Any):
        from .task import Task

        if name is not None:
            _names.check_label(name, kind="model", where="OutputModel")
        if config_text is not None and config_dict is not None:
            raise ArtifactError("OutputModel: pass config_text= or config_dict=, not both")
        task = task or Task.current_task()
        if task is None:
            raise ArtifactError("OutputModel needs a task: pass task=..., or call Task.init() first")
        self._task = task
        self.name = name or task.name
        self.framework = framework or ""
        self.tags = list(tags or [])
        self.comment = comment or ""
        self.id: str | None = None
        self._design: dict[str, Any] = {}
        base = None
        if base_model_id is not None:
            base = outputs.get_model(task.db, str(base_model_id))
            if base is None:
                raise ArtifactError(f"OutputModel(base_model_id={base_model_id!r}): no such model in the store {task.db.root}")
            self._design = {k: v for k, v in json.loads(base["metadata"]).items() if k in ("config_dict", "config_text", "labels")}
            self.framework = framework or base["framework"]
        self.update_design(config_text, config_dict, _record=False)
        if label_enumeration is not None:
            self._design["labels"] = dict(label_enumeration)
        if base is not None:  # the copy exists at once, with its base's weights
            ref = BlobRef(base["hash"], base["size"]) if base["hash"] else None
            self._record(ref, base["filename"], {"base_model_id": base["id"]})

    def _metadata(self, extra: dict | None = None) -> dict:
        return {"comment": self.comment, **self._design, **(extra or {})}

    def _record(self, ref, filename: str, extra: dict | None = None) -> None:
        self.id = outputs.put_model(self._task.db, self._task.id, self.name, ref, framework=self.framework, filename=filename,
                                    tags=self.tags, metadata=self._metadata(extra), model_id=self.id)

    @property
    def config_dict(self) -> dict:
        return dict(self._design.get("config_dict") or {})

    @property
    def config_text(self) -> str:
        return self._design.get("config_text") or (json.dumps(self._design["config_dict"], indent=2) if self._design.get("config_dict") else "")

    @property
    def labels(self) -> dict[str, int]:
        return dict(self._design.get("labels") or {})

    def update_design(self, config_text: str | None = None, config_dict: dict | None = None, _record: bool = True) -> bool:
        """Set the model's configuration (a dict, or text such as a config file's content)."""
        if config_dict is not None:
            if not isinstance(config_dict, dict):
                raise ArtifactError(f"model {self.name!r}: config_dict must be a dict, not {type(config_dict).__name__}")
            json.dumps(config_dict, default=str)
            self._design.pop("config_text", None)
            self._design["config_dict"] = json.loads(json.dumps(config_dict, default=str))
        elif config_text is not None:
            self._design.pop("config_dict", None)
            self._design["config_text"] = str(config_text)
        if _record and self.id is not None:
            outputs.update_model_metadata(self._task.db, self.id, self._metadata())
        return True

    def update_labels(self, labels: dict[str, int]) -> None:
        """Set the label enumeration ({'cat': 0, 'dog': 1})."""
        self._design["labels"] = dict(labels)
        if self.id is not None:
            outputs.update_model_metadata(self._task.db, self.id, self._metadata())

    def connect(self, task: Task, name: str | None = None, **_ignored: Any) -> None:
        """ClearML's check that a fresh model belongs to its task; `name` renames it on the task."""
        if task.id != self._task.id:
            raise ArtifactError(f"OutputModel {self.name!r} belongs to task {self._task.id}; it cannot be connected to "
                                f"task {task.id} (make a new OutputModel(task=...) there)")
        if name:
            self.name = _names.check_label(name, kind="model", where="OutputModel.connect", allow_empty=False)
            if self.id is not None:
                outputs.rename_model(self._task.db, self.id, self.name)

    def update_weights(self, weights_filename: str | os.PathLike | None = None, iteration: int | None = None,
                       auto_delete_file: bool = False, **_ignored: Any) -> str:
        """Store the weights file (or folder) and return the model's url."""
        if weights_filename is None or not os.path.exists(weights_filename):
            raise ArtifactError(f"model {self.name!r}: weights file {weights_filename!r} does not exist")
        db = self._task.db
        what = f"model {self.name!r} of task {self._task.id}"
        ref, kind, filename = _artifacts.encode(db, self.name, os.fspath(weights_filename), what=what)
        self._record(ref, filename + ("/" if kind == "folder" else ""), {"iteration": iteration})
        if auto_delete_file and kind == "file":
            os.unlink(weights_filename)
        return f"labpipe://{ref.hash}/{filename}"

    def update_weights_package(self, weights_path: str | os.PathLike | None = None, weights_filenames: Any = None,
                               iteration: int | None = None, **_ignored: Any) -> str:
        """Store a folder of weights (ClearML packs it; labpipe stores the folder as one artifact)."""
        return self.update_weights(weights_path, iteration=iteration)

    @property
    def url(self) -> str | None:
        if self.id is None:
            return None
        row = outputs.get_model(self._task.db, self.id)
        return f"labpipe://{row['hash']}/{row['filename'].rstrip('/')}" if row and row["hash"] else None

    @property
    def published(self) -> bool:
        return bool(self.id and Model(self.id).published)

    def publish(self) -> None:
        if self.id is None:
            raise ArtifactError(f"model {self.name!r} has no weights yet; call update_weights() before publish()")
        Model(self.id).publish()


    # -- the rest of ClearML's OutputModel names that mean something offline ------------------
    # (the names that do not are in labpipe/offline.py, and raise NotImplementedError saying why)

    def _read_user_metadata(self) -> dict[str, dict]:
        return dict(self._design.get("metadata") or {})

    def _write_user_metadata(self, entries: dict[str, dict]) -> None:
        self._design["metadata"] = entries
        if self.id is not None:
            outputs.update_model_metadata(self._task.db, self.id, {"metadata": entries})

    @property
    def task(self) -> str:
        """The id of the task the model belongs to."""
        return self._task.id

    @property
    def original_task(self) -> str:
        """The id of the task the model belongs to (the same as `task`)."""
        return self._task.id

    @property
    def project(self) -> str:
        """The project of the model's task."""
        return self._task.project

    def _stored(self, call: str) -> Model:
        if self.id is None:
            raise ArtifactError(f"OutputModel.{call}: model {self.name!r} has no weights yet; call update_weights() first")
        return Model(self.id)

    def get_weights(self, raise_on_error: bool = False, force_download: bool = False) -> str:
        """A local path to the weights last stored with `update_weights`."""
        return self._stored("get_weights").get_local_copy()

    def get_weights_package(self, return_path: bool = False, raise_on_error: bool = False, force_download: bool = False) -> Any:
        """The stored weights folder's files (paths), or with return_path=True the folder itself."""
        return self._stored("get_weights_package").get_weights_package(return_path=return_path)

    def wait_for_uploads(self, timeout: float | None = None, max_num_uploads: int | None = None) -> None:
        """Nothing to wait for: `update_weights` stores the weights before it returns."""


class ModelList(list):
    """A list of models that can also be indexed by name (the last model with that name)."""

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            for model in reversed(self):
                if model.name == key:
                    return model
            raise KeyError(f"no model named {key!r}; models: {[m.name for m in self]}")
        return super().__getitem__(key)

    def keys(self) -> list[str]:
        return [m.name for m in self]


# ClearML names with no offline meaning raise NotImplementedError saying why (labpipe/offline.py)
install_on(Model, "Model")
install_on(InputModel, "InputModel")
install_on(OutputModel, "OutputModel")
