"""Wake-up channels: waiting works whatever the file descriptors' numbers are."""

from __future__ import annotations

import os
import resource

import pytest

from labpipe import PipelineController
from labpipe.store import wakeup


def _high_pipe(number: int) -> tuple[int, int]:
    """A pipe whose read end is file descriptor `number` (past select()'s limit of 1023)."""
    if resource.getrlimit(resource.RLIMIT_NOFILE)[0] <= number:
        pytest.skip(f"this process may not open file descriptor {number}")
    r, w = os.pipe()
    os.dup2(r, number)
    os.close(r)
    return number, w


def test_readable_sees_a_pipe_past_descriptor_1023():
    r, w = _high_pipe(1500)
    try:
        assert wakeup.readable([r], 0.0) == []
        os.write(w, b"\0")
        assert wakeup.readable([r], 1.0) == [r]
    finally:
        os.close(r)
        os.close(w)


def double(x: int = 2):
    return 2 * x


def test_a_pipeline_runs_in_a_process_holding_over_a_thousand_files(stop_shared_pool):
    held = []
    try:
        while not held or held[-1] < 1100:  # a long session: a scheduler's pipe lands past 1023
            held.append(os.open(os.devnull, os.O_RDONLY))
        pipe = PipelineController(name="many files", project="wake", version="1.0.0")
        pipe.add_function_step("double", double, function_kwargs={"x": 21}, function_return=["y"])
        assert pipe.start_locally(run_pipeline_steps_locally=True)
        assert pipe.get_pipeline_dag()["double"].status == "completed"
    finally:
        for fd in held:
            os.close(fd)
