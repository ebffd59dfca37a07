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
    from labpipe.store.db import forget_database

    forget_database(path)  # its connection's three files would stay open for the rest of the session


@pytest.fixture
def stop_shared_pool():
    """Stop the process-wide pool a pipeline started on demand, after the test."""
    yield
    from labpipe.agent import pool

    if pool._shared is not None:
        pool._shared.stop()
        pool._shared = None


@pytest.fixture
def local_mode(stop_shared_pool):
    """PipelineDecorator.run_locally with a 2-worker pool; modes and refresh settings restored after."""
    from labpipe import PipelineDecorator
    from labpipe.pipeline.cache import request_refresh

    PipelineDecorator.run_locally(workers=2)
    yield
    PipelineDecorator._mode = "remote"
    PipelineDecorator._workers = None
    request_refresh(False)  # PipelineDecorator.refresh_cache() asks every later run of the process
