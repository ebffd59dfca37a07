"""Shared fixtures: every test gets its own real store in a temp dir."""

from __future__ import annotations

import pytest

import labpipe
from labpipe import config
from labpipe.task import Task


@pytest.fixture(autouse=True)
def store(tmp_path, monkeypatch):
    """A fresh store folder for each test (LABPIPE_STORE points at it, so child processes share it)."""
    path = tmp_path / "store"
    monkeypatch.setenv(config.ENV_STORE, str(path))
    monkeypatch.setattr(config, "_explicit", None)
    Task._current = None
    yield labpipe.store_path()
    Task._current = None
