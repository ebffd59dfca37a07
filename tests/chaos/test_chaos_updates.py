"""The updates chaos scenarios at CI size: concurrent edits of one task, and version skew."""

from __future__ import annotations

from chaos_updates import concurrent_params, concurrent_tags, racing_transitions, version_skew


def test_tags_added_by_many_processes_at_once_are_all_kept(tmp_path):
    f = concurrent_tags(tmp_path, full=False)
    assert f["failed_processes"] == 0
    assert (f["lost"], f["kept"]) == (0, f["expected"])


def test_parameters_set_by_many_processes_at_once_are_all_kept(tmp_path):
    f = concurrent_params(tmp_path, full=False)
    assert (f["failed_processes"], f["lost"], f["unexpected"]) == (0, 0, 0)


def test_racing_status_transitions_have_one_winner_that_stays(tmp_path):
    f = racing_transitions(tmp_path, full=False)
    assert f["failed_processes"] == 0
    assert {k: f[k] for k in ("double_started", "never_started", "double_ended", "never_ended", "overwritten")} == dict.fromkeys(
        ("double_started", "never_started", "double_ended", "never_ended", "overwritten"), 0)


def test_older_workers_and_writers_stop_writing_once_a_newer_labpipe_migrates_the_store(tmp_path):
    f = version_skew(tmp_path, full=False)
    assert f["workers_exited_3"] == f["workers"]  # ended, with their own exit code, not restarted in a loop
    assert f["worker_message_clear"] and f["worker_stderr_lines_max"] == 1
    assert f["max_worker_exit_s"] <= 3.0
    assert f["writers_refused"] == f["writers"]
    assert (f["writes_after_upgrade"], f["claimed_after_upgrade"], f["running_task_ended_by_old_worker"]) == (0, 0, 0)
