"""Output models (ClearML's `OutputModel`, `Model`): weights files recorded on a task."""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any

from . import artifacts as _artifacts
from . import names as _names
from .errors import ArtifactError
from .store import outputs

if TYPE_CHECKING:
    from .store.db import Database
    from .task import Task


class Model:
    """A stored model: id, name, framework, url, tags; `get_local_copy()` gives its weights file."""

    def __init__(self, model_id: str, name: str, task_id: str, framework: str, digest: str | None, size: int,
                 filename: str, tags: list[str], metadata: dict, db: Database):
        self.id, self.name, self.task, self.framework = model_id, name, task_id, framework
        self.hash, self.size, self.filename, self.tags, self.metadata = digest, size, filename, tags, metadata
        self._db = db

    @classmethod
    def _from_row(cls, r, db: Database) -> Model:
        return cls(r["id"], r["name"], r["task"], r["framework"], r["hash"], r["size"], r["filename"],
                   json.loads(r["tags"]), json.loads(r["metadata"]), db)

    def __repr__(self) -> str:
        return f"<Model {self.id} {self.name!r} of task {self.task}>"

    @property
    def url(self) -> str | None:
        return f"labpipe://{self.hash}/{self.filename}" if self.hash else None

    def get_local_copy(self, extract_archive: bool = True) -> str:
        """A local path to the model's weights file (or folder)."""
        if not self.hash:
            raise ArtifactError(f"model {self.name!r} of task {self.task} has no weights; call update_weights() first")
        kind = "folder" if self.filename.endswith("/") else "file"
        return str(_artifacts.materialize(self._db, self.hash, kind, self.filename.rstrip("/"), what=f"model {self.name!r} of task {self.task}"))

    def get_weights(self) -> str:
        return self.get_local_copy()


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


class OutputModel:
    """A model a task produces (ClearML's `OutputModel(task=, name=, framework=)`).

    task: the task it belongs to (default: `Task.current_task()`). Call `update_weights(path)` to store
    the weights file (or folder); each call records the new weights.
    """

    def __init__(self, task: Task | None = None, name: str | None = None, framework: str | None = None,
                 tags: list[str] | None = None, comment: str | None = None, **_ignored: Any):
        from .task import Task

        if name is not None:
            _names.check_label(name, kind="model", where="OutputModel")
        task = task or Task.current_task()
        if task is None:
            raise ArtifactError("OutputModel needs a task: pass task=..., or call Task.init() first")
        self._task = task
        self.name = name or task.name
        self.framework = framework or ""
        self.tags = list(tags or [])
        self.comment = comment or ""
        self.id: str | None = None

    def update_weights(self, weights_filename: str | os.PathLike | None = None, iteration: int | None = None,
                       auto_delete_file: bool = False, **_ignored: Any) -> str:
        """Store the weights file (or folder) and return the model's url."""
        if weights_filename is None or not os.path.exists(weights_filename):
            raise ArtifactError(f"model {self.name!r}: weights file {weights_filename!r} does not exist")
        db = self._task._db
        what = f"model {self.name!r} of task {self._task.id}"
        ref, kind, filename = _artifacts.encode(db, self.name, os.fspath(weights_filename), what=what)
        self.id = outputs.put_model(db, self._task.id, self.name, ref, framework=self.framework,
                                    filename=filename + ("/" if kind == "folder" else ""), tags=self.tags,
                                    metadata={"iteration": iteration, "comment": self.comment}, model_id=self.id)
        if auto_delete_file and kind == "file":
            os.unlink(weights_filename)
        return f"labpipe://{ref.hash}/{filename}"

    @property
    def url(self) -> str | None:
        if self.id is None:
            return None
        row = outputs.get_model(self._task._db, self.id)
        return f"labpipe://{row['hash']}/{row['filename'].rstrip('/')}" if row and row["hash"] else None

