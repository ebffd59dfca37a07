"""The error hierarchy: every error class lives in labpipe/errors.py, and the modules raising one re-use it."""

from __future__ import annotations

import ast
import builtins
import inspect
from pathlib import Path

import pytest

import labpipe.errors
import labpipe.repo
import labpipe.requirements

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "labpipe"

# Exception classes that may live outside errors.py, each with the reason.
OUTSIDE_ERRORS = {
    ("task.py", "DeleteError"): "ClearML's Task.DeleteError: a name of the Task class's surface, never raised",
    ("fingerprint/encoding.py", "NoFingerprint"): "control flow inside the fingerprint package: it leaves "
    "the package only as Unfingerprintable",
}

_EXCEPTION_NAMES = {
    name for name, value in vars(builtins).items() if isinstance(value, type) and issubclass(value, BaseException)
} | {name for name, value in vars(labpipe.errors).items() if inspect.isclass(value) and issubclass(value, BaseException)}


def _exception_classes(tree: ast.AST) -> list[str]:
    """Classes (at any depth) with a base named like a built-in or labpipe exception, or like one found here."""
    classes = [node for node in ast.walk(tree) if isinstance(node, ast.ClassDef)]
    known, found = set(_EXCEPTION_NAMES), []
    while True:  # until no class is added: a base may be defined after (or inside) the class using it
        new = [c.name for c in classes if c.name not in found and known.intersection(map(_base_name, c.bases))]
        if not new:
            return sorted(found)
        found += new
        known.update(new)


def _base_name(base: ast.expr) -> str | None:
    return base.attr if isinstance(base, ast.Attribute) else getattr(base, "id", None)


def _module_params():
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        if rel == "errors.py":
            continue
        yield pytest.param(rel, id=rel)


@pytest.mark.parametrize("module", _module_params())
def test_no_module_but_errors_defines_an_error_class(module):
    tree = ast.parse((PACKAGE / module).read_text(encoding="utf-8"))
    defined = [name for name in _exception_classes(tree) if (module, name) not in OUTSIDE_ERRORS]
    assert defined == [], f"labpipe/{module} defines {defined}: define them in labpipe/errors.py and import them"


def test_the_scan_finds_an_error_class_defined_outside_errors():
    tree = ast.parse("class Outer:\n    class Oops(errors.StoreError):\n        pass\nclass Worse(Oops): pass\n")
    assert _exception_classes(tree) == ["Oops", "Worse"]


def test_moved_errors_keep_their_bases():
    assert labpipe.errors.RepoError.__bases__ == (labpipe.errors.LabpipeError,)
    assert labpipe.errors.RequirementsError.__bases__ == (labpipe.errors.LabpipeError, ValueError)
    assert labpipe.errors.FunctionSourceError.__bases__ == (labpipe.errors.LabpipeError, TypeError)


def test_errors_imported_from_their_old_modules_are_the_hierarchys_own():
    # `from labpipe.repo import RepoError` in user code keeps catching what labpipe raises.
    assert labpipe.repo.RepoError is labpipe.errors.RepoError
    assert labpipe.requirements.RequirementsError is labpipe.errors.RequirementsError

