"""labpipe's one error hierarchy: every message names the thing, what was expected, and what to do."""

from __future__ import annotations


class LabpipeError(Exception):
    """Base of every error labpipe raises on purpose."""


class StoreError(LabpipeError):
    """The store cannot be opened or used (bad path, newer schema, not SQLite, network filesystem)."""


class StoreFull(StoreError):
    """The disk (or quota) holding the store is full: names what could not be stored, the store and the free space."""


class StoreTooNew(StoreError):
    """The store's schema is newer than this labpipe's: a newer labpipe upgraded it (maybe while this
    process ran). This process must stop writing to it: upgrade labpipe and restart it."""


class TaskNotFound(LabpipeError, LookupError):
    """No task matches the id or the project + name that was asked for."""


class IllegalTransition(LabpipeError):
    """A task status change that the task model does not allow (e.g. completed -> in_progress)."""


class ArtifactError(LabpipeError):
    """An artifact cannot be stored or loaded (unpicklable object, missing artifact)."""


class BlobCorrupted(ArtifactError):
    """A blob's bytes no longer match the hash that names them."""


class InvalidName(LabpipeError, ValueError):
    """A name (artifact, return value, step, task, project, queue, model) breaks the rules in labpipe/names.py."""


class UnsafePath(ArtifactError):
    """A file labpipe was about to write would land outside its folder, or through a symbolic link."""


class ParameterError(LabpipeError, ValueError):
    """A hyperparameter name or value is malformed."""


class QueueError(LabpipeError, ValueError):
    """A queue is unknown, or nobody serves it within the time asked for (a ValueError, as ClearML
    raises for a queue it cannot find)."""


class StepFailed(LabpipeError):
    """A pipeline step (or a function task) failed; names the step, its task id and the original error."""


class PipelineError(LabpipeError):
    """A pipeline is defined wrongly (duplicate step, unknown parent, cycle, bad reference, no version)."""


class Unfingerprintable(LabpipeError, TypeError):
    """A value has no stable fingerprint, so a call that receives it is not cached."""


class RepoError(LabpipeError):
    """A task's repo cannot be used: remote URL (offline), not a git checkout, unknown commit, git failure."""


class RequirementsError(LabpipeError, ValueError):
    """A requirement cannot be understood (bad requirements.txt line, unparsable function source)."""


class FunctionSourceError(LabpipeError, TypeError):
    """A function task cannot be made from this callable (no retrievable `def` source)."""


class DatasetError(LabpipeError, ValueError):
    """A dataset is unknown, finalized when a draft is needed (or the other way), or given a bad path."""
