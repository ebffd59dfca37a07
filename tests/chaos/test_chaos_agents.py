"""The agent chaos scenarios at CI size (tools/chaos.py runs them at full size)."""

from __future__ import annotations

from chaos_agents import BAD_STORES, bad_stores, clock_steps, kills, poison_storm


def test_kills_of_workers_and_agents_lose_nothing_and_release_within_the_lease(tmp_path):
    f = kills(tmp_path, full=False)
    assert f["kills"] >= 8 and f["runs_hit"] > 0, f
    assert f["lost"] == 0 and f["double_completed"] == 0 and f["unreleased"] == 0, f
    assert f["max_release_s"] <= f["release_limit_s"], f


def test_a_poison_storm_fails_the_poison_tasks_by_name_and_later_tasks_still_run(tmp_path):
    f = poison_storm(tmp_path, full=False)
    assert f["poison_failed_naming_the_task"] == f["poison_tasks"], f
    assert f["poison_max_attempts"] == 3, f
    assert f["agent_alive_after"] and f["good_completed"] == f["good_tasks"] == 10, f


def test_agent_on_every_kind_of_bad_store_exits_1_with_one_line(tmp_path):
    f = bad_stores(tmp_path, full=False)
    for kind in BAD_STORES:
        assert f[f"{kind}_exit"] == 1 and f[f"{kind}_stderr_lines"] == 1, (kind, f)
        assert f[f"{kind}_s"] < 5, (kind, f)  # target 2 s (see tools/chaos.py); slack for a loaded CI box


def test_clock_steps_neither_fail_healthy_runs_nor_hide_a_dead_or_hung_owner(tmp_path):
    f = clock_steps(tmp_path, full=False)
    assert f["healthy_failed"] == 0 and f["healthy_rerun"] == 0 and f["both_clocks_served"], f
    assert f["killed_owner_600s_ahead_release_s"] <= f["release_limit_s"], f
    assert f["hung_owner_600s_ahead_release_s"] <= f["release_limit_s"], f
