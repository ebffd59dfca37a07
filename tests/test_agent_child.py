"""What runs in a task's process, and what a warm worker may import ahead: the library-or-project
rule it shares with the cache (labpipe/source.py)."""

from __future__ import annotations

import importlib
import json
import os
import sys
import types

import click
import pytest

import labpipe
from labpipe import source
from labpipe.agent import child


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A project folder with a module of its own and a virtual environment inside it holding a
    package, both importable (as a script in the project with its venv active would have them)."""
    root = tmp_path / "project"
    venv_site = root / ".venv" / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}" / "site-packages"
    venv_site.mkdir(parents=True)
    (root / "lp_project_module.py").write_text("def f():\n    return 1\n")
    (venv_site / "lp_vendored_module.py").write_text("def g():\n    return 2\n")
    monkeypatch.syspath_prepend(str(venv_site))
    monkeypatch.syspath_prepend(str(root))
    yield root, venv_site
    for name in ("lp_project_module", "lp_vendored_module"):
        sys.modules.pop(name, None)


def _probe(name: str, path: str):
    """A module whose file is `path` (registered in sys.modules) and a function defined in it."""
    module = types.ModuleType(name)
    module.__file__ = path
    sys.modules[name] = module

    def probe():
        return path

    probe.__module__ = name
    return module, probe


def test_the_cache_and_the_warm_worker_agree_on_what_is_a_library(project):
    root, venv_site = project
    expected = {
        os.__file__: True,  # the standard library
        json.__file__: True,
        click.__file__: True,  # this environment's site-packages
        str(venv_site / "lp_vendored_module.py"): True,  # a virtual environment inside the project
        labpipe.__file__: True,  # labpipe itself, wherever it is installed
        str(root / "lp_project_module.py"): False,  # the project's own code
        "<string>": False,  # code with no file (exec)
        "<labpipe step train>": False,
    }
    names = []
    try:
        for i, (path, library) in enumerate(expected.items()):
            names.append(f"lp_probe_{i}")
            module, function = _probe(names[-1], path)
            # the cache: a function of that file counts by name (library) or by its source (project);
            # the warm worker: a module of that file is imported ahead (library) or never (project)
            views = (source.is_library_path(path), source.is_library_code(function), child.is_library(module))
            assert views == (library, library, library), (path, views)
    finally:
        for name in names:
            sys.modules.pop(name, None)
    assert source.is_library_path(str(venv_site)) and not source.is_library_path(str(root))

    # By name: what a warm worker would import ahead, looked up before any import and again after.
    for name, func, library in (("lp_vendored_module", "g", True), ("lp_project_module", "f", False), ("json", "dumps", True),
                                ("click", "echo", True)):
        assert child.is_library_name(name) is library, name
        module = importlib.import_module(name)
        assert child.is_library(module) is library, name
        assert child.is_library_name(name) is library, name
        assert source.is_library_code(getattr(module, func)) is library, name
    assert not child.is_library_name("this")  # importing it prints: never warmed


def test_a_link_from_the_project_into_site_packages_is_a_library_in_both_views(project):
    root, venv_site = project
    link = root / "linked.py"
    link.symlink_to(venv_site / "lp_vendored_module.py")
    back = venv_site / "from_project.py"
    back.symlink_to(root / "lp_project_module.py")  # a file in site-packages that is really the project's
    for path, library in ((link, True), (back, False)):
        module, function = _probe("lp_probe_link", str(path))
        try:
            assert source.is_library_path(path) is source.is_library_code(function) is child.is_library(module) is library
        finally:
            sys.modules.pop("lp_probe_link", None)


def test_the_task_id_variable_is_defined_once_and_the_child_does_not_import_the_task_api_for_it():
    import ast
    from pathlib import Path

    from labpipe import task, task_env

    assert task.ENV_TASK_ID is child.ENV_TASK_ID is task_env.ENV_TASK_ID == "LABPIPE_TASK_ID"
    package = Path(labpipe.__file__).parent
    defining = sorted(str(p.relative_to(package)) for p in package.rglob("*.py")
                      if 'ENV_TASK_ID = "LABPIPE_TASK_ID"' in p.read_text(encoding="utf-8"))
    assert defining == ["task_env.py"]
    assert not [n for n in ast.parse((package / "task_env.py").read_text()).body if isinstance(n, (ast.Import, ast.ImportFrom))]
    top = ast.parse((package / "agent" / "child.py").read_text()).body
    imported = {n.module for n in top if isinstance(n, ast.ImportFrom)} | {a.name for n in top if isinstance(n, ast.Import) for a in n.names}
    assert "task" not in imported and "labpipe.task" not in imported and "task_env" in imported
