"""The controller chaos scenario at CI size: local controllers SIGKILLed mid-run never make a completed step run again."""

from __future__ import annotations

from chaos_controller import controller_kills


def test_killed_controllers_never_rerun_a_completed_step_and_the_last_run_completes(tmp_path):
    f = controller_kills(tmp_path, full=False)
    assert f["kills"] >= 2, f  # the scenario really killed runs midway
    assert f["completed_steps_rerun"] == 0 and f["other_failures"] == 0, f
    assert f["final_run_ok"], f
