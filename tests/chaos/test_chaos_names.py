"""Names and permissions under chaos (issue 9, holes 1 and 8), at CI size; `tools/chaos.py` runs them full size."""

from __future__ import annotations

import pytest
from chaos_names import fuzzed_names, umask_022

pytestmark = pytest.mark.usefixtures("stop_shared_pool")


def test_fuzzed_names_write_nothing_outside_the_store_and_every_refusal_is_typed(tmp_path):
    figures = fuzzed_names(tmp_path, full=False)
    assert figures["names"] == figures["examples"] and figures["refused"] > 0 and figures["accepted"] > 0, figures
    assert figures["outside_files"] == 0, figures
    assert figures["store_strays"] == 0, figures
    assert figures["untyped_errors"] == 0 and figures["cli_tracebacks"] == 0, figures


def test_under_umask_022_every_store_folder_is_0700_and_every_file_0600(tmp_path):
    import os

    before = os.umask(0o027)
    os.umask(before)
    figures = umask_022(tmp_path, full=False)
    after = os.umask(before)
    os.umask(after)
    assert after == before, "the scenario must restore the umask"
    assert figures["pipeline_ok"] and figures["script_ok"] and figures["worktree"], figures
    assert figures["store_tightened"] and figures["warned"], figures
    assert figures["db_files"] >= 1 and figures["cli_copies"] >= 4, figures
    assert figures["loose_folders"] == 0 and figures["loose_files"] == 0, figures
    assert figures["loose_outputs"] == 0, figures
