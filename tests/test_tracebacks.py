"""An uncaught labpipe error prints the user's frames and the message, not labpipe's insides."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import labpipe

PACKAGE = labpipe.__file__.rsplit("/", 1)[0] + "/"


def _run(tmp_path, body: str, **env):
    script = tmp_path / "user_script.py"
    script.write_text(textwrap.dedent(body))
    import os

    return subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **env}, cwd=tmp_path)


UNKNOWN_TASK = """
    from labpipe import Task

    def look_up():
        return Task.get_task(task_id="0123456789abcdef0123456789abcdef")

    look_up()
"""


def test_an_uncaught_labpipe_error_shows_the_users_frames_and_not_labpipes(tmp_path):
    done = _run(tmp_path, UNKNOWN_TASK)
    assert done.returncode == 1
    err = done.stderr
    assert err.startswith("Traceback (most recent call last):")
    assert "user_script.py\", line 7, in <module>" in err
    assert "user_script.py\", line 5, in look_up" in err
    assert PACKAGE not in err  # not one frame from inside labpipe
    assert err.rstrip().splitlines()[-1].startswith("labpipe.errors.TaskNotFound: ")
    assert "0123456789abcdef0123456789abcdef" in err


def test_labpipe_full_traceback_shows_every_frame(tmp_path):
    done = _run(tmp_path, UNKNOWN_TASK, LABPIPE_FULL_TRACEBACK="1")
    assert done.returncode == 1
    assert PACKAGE + "task.py" in done.stderr


def test_other_errors_print_as_python_prints_them(tmp_path):
    done = _run(tmp_path, """
        import json
        import labpipe
        json.loads("{")
    """)
    assert done.returncode == 1
    assert "json/decoder.py" in done.stderr  # the library's frames are all there
    assert "json.decoder.JSONDecodeError" in done.stderr


def test_a_hook_someone_else_installed_is_left_alone(tmp_path):
    done = _run(tmp_path, """
        import sys
        sys.excepthook = lambda kind, exc, tb: print("their hook:", kind.__name__)
        from labpipe import Task
        Task.get_task(task_id="0123456789abcdef0123456789abcdef")
    """)
    assert "their hook: TaskNotFound" in done.stdout


def test_a_failed_step_reaching_the_pipeline_logic_shows_the_cause_and_the_users_lines_only(tmp_path):
    done = _run(tmp_path, """
        from labpipe import PipelineDecorator

        @PipelineDecorator.component(cache=False)
        def divide(a):
            return a / 0

        @PipelineDecorator.pipeline(name="p", project="tb", version="1.0.0")
        def pipe():
            if divide(1) > 0:
                print("unreachable")

        PipelineDecorator.run_locally(workers=1)  # debug mode would raise the ZeroDivisionError itself
        pipe()
    """, LABPIPE_STORE=str(tmp_path / "store"))
    assert done.returncode == 1
    err = done.stderr
    last = [line for line in err.splitlines() if line.startswith("labpipe.errors.StepFailed")]
    assert last and "'divide'" in last[0] and "ZeroDivisionError" in last[0]
    assert "in divide" in err and "return a / 0" in err  # where it happened, in the user's code
    assert "user_script.py\", line 10, in pipe" in err  # the pipeline logic's line that needed the value
    assert PACKAGE not in err
