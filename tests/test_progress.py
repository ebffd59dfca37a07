"""Live progress (labpipe/progress*.py): what a person sees while a pipeline runs, in every mode.

Real runs on real pools; the view writes to this process's stderr (captured by pytest: not a
terminal, so plain lines unless LABPIPE_PROGRESS=live forces the rich view)."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import textwrap

import pipeline_components as pc
import pytest

from labpipe import PipelineController, PipelineDecorator, StepFailed, Task, progress
from labpipe.progress_events import RunState, StepEvent, ago, describe, first_line

SGR = re.compile(r"\x1b\[[0-9;]*m")  # colour and style codes (cursor movement ends in other letters)


@PipelineDecorator.component(return_values=["value"])
def chatty(x: int):
    import sys
    import time

    print(f"hello {x}")
    print(f"warning {x}", file=sys.stderr)
    time.sleep(0.3)  # long enough for the scheduler to see it running
    print(f"bye {x}")
    return x + 1


@PipelineDecorator.pipeline(name="talk", project="tests", version="1")
def talk(x: int = 1):
    return chatty(chatty(x))


@PipelineDecorator.pipeline(name="talk-quiet", project="tests", version="1", quiet=True)
def talk_quiet(x: int = 1):
    return chatty(x)


@PipelineDecorator.pipeline(name="talk-no-output", project="tests", version="1", stream_output=False)
def talk_no_output(x: int = 1):
    return chatty(x)


@PipelineDecorator.pipeline(name="cached-sum", project="tests", version="1")
def cached_sum(n: int = 3):
    return pc.add_up(pc.make_numbers(n), bonus=1)


@PipelineDecorator.pipeline(name="fails", project="tests", version="1")
def fails():
    return pc.square(pc.explode("bad row 3"))


def _lines(text: str) -> list[str]:
    return [line.rstrip() for line in text.splitlines()]


def _controller() -> PipelineController:
    pipe = PipelineController(name="ctl-progress", project="tests", version="1")
    pipe.add_function_step(name="first", function=pc.make_numbers.func, function_kwargs={"n": 2},
                           function_return=["numbers"])
    pipe.add_function_step(name="second", function=pc.add_up.func, function_kwargs={"numbers": "${first.numbers}"},
                           function_return=["total"], parents=["first"])
    return pipe


# -- plain lines, off a terminal ---------------------------------------------------------------


def test_plain_lines_show_each_step_starting_and_done_and_the_pipeline_end(local_mode, capsys):
    assert talk(1) == 3
    err = _lines(capsys.readouterr().err)
    run = [t for t in Task.get_tasks(project_name="tests") if t.task_type == "controller"][0]
    assert err[0] == f"pipeline 'talk' started (task {run.id})"
    assert re.search(r"^chatty\s+started$", "\n".join(err), re.M)
    assert len([ln for ln in err if re.match(r"^chatty(_1)?\s+done in \d+\.\d\d s$", ln)]) == 2
    assert re.match(r"^pipeline 'talk' completed in \d+\.\d+ s \(2 done\)$", err[-1])


def test_steps_output_streams_prefixed_by_their_names_before_their_done_line(local_mode, capsys):
    talk(1)
    err = _lines(capsys.readouterr().err)
    for step, x in (("chatty", 1), ("chatty_1", 2)):
        said = [i for i, ln in enumerate(err) if re.match(rf"^{step}\s+\| hello {x}$", ln)]
        warned = [i for i, ln in enumerate(err) if re.match(rf"^{step}\s+\| warning {x}$", ln)]
        bye = [i for i, ln in enumerate(err) if re.match(rf"^{step}\s+\| bye {x}$", ln)]
        done = [i for i, ln in enumerate(err) if re.match(rf"^{step}\s+done in", ln)]
        assert said and warned and bye and done, err
        assert said[0] < bye[0] < done[0]


def test_step_output_can_be_left_out_by_argument_or_environment(local_mode, capsys, monkeypatch):
    talk_no_output(1)
    err = capsys.readouterr().err
    assert "| hello" not in err and re.search(r"^chatty\s+done in", err, re.M)
    monkeypatch.setenv(progress.ENV_STEP_OUTPUT, "0")
    talk(1)
    err = capsys.readouterr().err
    assert "| hello" not in err and "| bye" not in err and "pipeline 'talk' completed" in err


def test_a_cache_hit_says_which_task_it_comes_from_and_how_old(local_mode, capsys):
    assert cached_sum(3) == 4
    first = capsys.readouterr().err
    assert "cached (" not in first
    made = {t.name: t.id for t in Task.get_tasks(project_name="tests") if t.task_type != "controller"}
    assert cached_sum(3) == 4
    err = capsys.readouterr().err
    for step in ("make_numbers", "add_up"):
        line = re.search(rf"^{step}\s+cached \(task (\w+)…, (\d+) s ago\)$", err, re.M)
        assert line, err
        assert made[step].startswith(line.group(1)) and len(line.group(1)) == 6
    assert re.search(r"completed in .* \(0 done, 2 cached\)$", err, re.M)


def test_a_failed_step_shows_the_first_line_of_its_root_cause_and_what_it_skipped(local_mode, capsys):
    with pytest.raises(StepFailed):
        fails()
    err = _lines(capsys.readouterr().err)
    failed = [i for i, ln in enumerate(err) if re.match(r"^explode\s+failed: ValueError: bad row 3$", ln)]
    skipped = [i for i, ln in enumerate(err) if re.match(r"^square\s+skipped: parent step 'explode' failed: ValueError: bad row 3$", ln)]
    assert failed and skipped and failed[0] < skipped[0], err
    assert any(re.match(r"^explode\s+\| ValueError: bad row 3$", ln) for ln in err)  # its traceback, streamed
    assert re.match(r"^pipeline 'fails' failed in .* \(0 done, 1 failed, 1 skipped\)$", err[-1])


# -- quiet ---------------------------------------------------------------------------------------


def test_quiet_by_argument_or_environment_shows_nothing(local_mode, capsys, monkeypatch):
    assert talk_quiet(1) == 2
    assert capsys.readouterr().err == ""
    monkeypatch.setenv(progress.ENV_PROGRESS, "0")
    assert talk(1) == 3
    assert capsys.readouterr().err == ""
    assert [t.get_status() for t in Task.get_tasks(project_name="tests") if t.task_type == "controller"] == ["completed"] * 2


def test_controller_start_locally_shows_progress_and_is_quiet_when_asked(stop_shared_pool, capsys):
    assert _controller().start_locally(run_pipeline_steps_locally=True)
    err = capsys.readouterr().err
    assert re.search(r"^first\s+done in", err, re.M) and re.search(r"^second\s+done in", err, re.M)
    assert re.search(r"^pipeline 'ctl-progress' completed in .* \(2 done\)$", err, re.M)
    assert _controller().start_locally(run_pipeline_steps_locally=True, quiet=True)
    assert capsys.readouterr().err == ""


# -- debug mode ------------------------------------------------------------------------------------


def test_debug_mode_shows_its_plain_calls_as_steps_with_their_prints_prefixed(capsys):
    PipelineDecorator.debug_pipeline()
    try:
        assert talk(1) == 3
    finally:
        PipelineDecorator._mode = "remote"
    out, err = capsys.readouterr()
    assert "hello" not in out  # the step's prints went to the view, under its name
    lines = _lines(err)
    assert any(re.match(r"^chatty\s+\| hello 1$", ln) for ln in lines) and any(re.match(r"^chatty_1\s+\| bye 2$", ln) for ln in lines)
    assert any(re.match(r"^chatty_1\s+done in 0\.3\d s$", ln) for ln in lines)
    assert re.match(r"^pipeline 'talk' completed in .* \(2 done\)$", lines[-1])


def test_debug_mode_failure_names_the_step_and_the_exception(capsys):
    PipelineDecorator.debug_pipeline()
    try:
        with pytest.raises(ValueError):
            fails()
    finally:
        PipelineDecorator._mode = "remote"
    err = capsys.readouterr().err
    assert re.search(r"^explode\s+failed: ValueError: bad row 3$", err, re.M)
    assert re.search(r"^pipeline 'fails' failed in", err, re.M)


# -- the rich live view --------------------------------------------------------------------------


def test_live_view_renders_on_a_forced_terminal_with_the_counts(local_mode, capsys, monkeypatch):
    monkeypatch.setenv(progress.ENV_PROGRESS, "live")
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("FORCE_COLOR", "1")
    assert cached_sum(3) == 4
    assert talk(1) == 3
    err = capsys.readouterr().err
    assert "\x1b[?25l" in err and "\x1b[?25h" in err  # drawn live (cursor hidden), and the terminal left clean
    plain = SGR.sub("", err)
    assert re.search(r"pipeline 'talk' completed\s+2 done\s+total \d", plain), plain[-500:]
    assert re.search(r"chatty\s+\| hello 1", plain) and re.search(r"chatty_1\s+done", plain)
    assert re.search(r"pipeline 'cached-sum' completed\s+2 done\s+total", plain)
    assert SGR.search(err)  # coloured with FORCE_COLOR


def test_no_color_means_no_colour_codes_even_when_forced(local_mode, capsys, monkeypatch):
    monkeypatch.setenv(progress.ENV_PROGRESS, "live")
    monkeypatch.setenv("FORCE_COLOR", "1")
    monkeypatch.setenv("NO_COLOR", "1")
    assert cached_sum(3) == 4
    err = capsys.readouterr().err
    assert "2 done" in err and "\x1b[?25l" in err  # still the live view
    assert not SGR.search(err), repr(SGR.search(err))
    monkeypatch.setenv(progress.ENV_PROGRESS, "plain")
    with pytest.raises(StepFailed):
        fails()
    assert not SGR.search(capsys.readouterr().err)


def test_plain_lines_are_coloured_on_a_forced_colour_stream_only_without_no_color(monkeypatch):
    from labpipe.progress_view import PlainLines

    state = RunState(name="p", run_id="f" * 32)
    step = state.apply(StepEvent("s", "failed", error="ValueError: x"))
    monkeypatch.setenv("FORCE_COLOR", "1")
    monkeypatch.delenv("NO_COLOR", raising=False)
    out = io.StringIO()
    PlainLines(out).step(step, state)
    assert SGR.search(out.getvalue())
    monkeypatch.setenv("NO_COLOR", "1")
    out = io.StringIO()
    PlainLines(out).step(step, state)
    assert out.getvalue() == "s  failed: ValueError: x\n"


# -- following a run executed elsewhere ------------------------------------------------------------


def test_follow_shows_a_run_from_the_store_with_its_steps_output(local_mode):
    assert talk_quiet(5) == 6  # ran quietly here; follow it as a caller elsewhere would
    (run,) = [t for t in Task.get_tasks(project_name="tests") if t.task_type == "controller"]
    out = io.StringIO()
    assert progress.follow(run.id[:8], stream=out, poll=0.05) == "completed"
    lines = _lines(out.getvalue())
    assert lines[0] == f"pipeline 'talk-quiet' started (task {run.id})"
    assert "chatty | hello 5" in lines and "chatty | bye 5" in lines and "chatty | warning 5" in lines
    assert lines.index("chatty | bye 5") < next(i for i, ln in enumerate(lines) if ln.startswith("chatty  done in"))
    assert re.match(r"^pipeline 'talk-quiet' completed in .* \(1 done\)$", lines[-1])
    quiet = io.StringIO()
    assert progress.follow(run.id, stream=quiet, quiet=True) == "completed" and quiet.getvalue() == ""


def test_follow_of_a_failed_run_shows_the_stored_root_cause(local_mode, monkeypatch):
    monkeypatch.setenv(progress.ENV_PROGRESS, "0")
    with pytest.raises(StepFailed):
        fails()
    monkeypatch.delenv(progress.ENV_PROGRESS)
    (run,) = [t for t in Task.get_tasks(project_name="tests") if t.task_type == "controller"]
    out = io.StringIO()
    assert progress.follow(run.id, stream=out, stream_output=False) == "failed"
    text = out.getvalue()
    assert re.search(r"^explode\s+failed: ValueError: bad row 3$", text, re.M) and "| Traceback" not in text
    assert re.search(r"^square\s+skipped: parent step 'explode' failed", text, re.M)


REMOTE = textwrap.dedent("""
    from labpipe import PipelineDecorator

    @PipelineDecorator.component(return_values=["numbers"])
    def make_numbers(n: int = 3):
        print("making", n)
        return list(range(n))

    @PipelineDecorator.pipeline(name="remote-progress", project="e2e", version="1", return_value="total")
    def main(n=4):
        return sum(make_numbers(n))

    if __name__ == "__main__":
        print("result", main())
""")


def test_a_caller_waiting_on_a_services_worker_sees_the_steps_and_their_output(tmp_path):
    script = tmp_path / "remote_progress.py"
    script.write_text(REMOTE)
    env = {k: v for k, v in os.environ.items() if k not in (progress.ENV_PROGRESS, progress.ENV_STEP_OUTPUT, "LABPIPE_TASK_ID")}
    proc = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "result 6" in proc.stdout
    (run,) = [t for t in Task.get_tasks(project_name="e2e") if t.task_type == "controller"]
    assert f"pipeline 'remote-progress' started (task {run.id})" in proc.stderr
    assert re.search(r"^make_numbers\s+\| making 4$", proc.stderr, re.M), proc.stderr
    assert re.search(r"^make_numbers\s+done in", proc.stderr, re.M)
    assert re.search(r"^pipeline 'remote-progress' completed in", proc.stderr, re.M)
    # the controller on the worker wrote its own lines to its console, without its steps' output
    console = run.get_console()
    assert re.search(r"^make_numbers\s+done in", console, re.M) and "| making" not in console


# -- the words ---------------------------------------------------------------------------------------


def test_words_for_people():
    state = RunState(name="p", run_id="0" * 32)
    hit = state.apply(StepEvent("step_two", "cached", task_id="3f2a91" + "0" * 26, completed=1000.0))
    assert describe(hit).startswith("cached (task 3f2a91…, ") and describe(hit, unicode=False).startswith("cached (task 3f2a91..., ")
    assert ago(0, now=2 * 3600 + 5) == "2 h ago" and ago(0, now=90) == "1 min ago" and ago(0, now=3 * 86400) == "3 d ago"
    assert first_line("step 'load' (task abc123) failed: ValueError: bad\n  File x") == "ValueError: bad"
    assert state.apply(StepEvent("step_two", "cached", task_id=hit.task_id)) is None  # no change, no line
    # a step stopped from outside reads as `labpipe show` words it
    stopped = state.apply(StepEvent("train", "aborted", error="pipeline stopped: by labpipe stop"))
    assert describe(stopped) == "stopped: pipeline stopped: by labpipe stop"
    assert state.counts["cached"] == 1
