"""The blob chaos scenarios at CI size: kills mid-upload, byte flips, gc against writers, a full disk."""

from __future__ import annotations

import pytest
import small_disk
from chaos_blobs import CHECKS, blob_kills, byte_flips, full_disk, gc_vs_writers


def test_no_bad_blob_is_served_after_kills_mid_upload(tmp_path):
    figures = blob_kills(tmp_path, full=False)
    assert CHECKS["blob_kills"](figures), figures


def test_after_a_byte_flip_the_next_run_recomputes_and_succeeds(tmp_path):
    figures = byte_flips(tmp_path, full=False)
    assert CHECKS["byte_flips"](figures), figures


def test_gc_against_writers_deletes_nothing_referenced(tmp_path):
    figures = gc_vs_writers(tmp_path, full=False)
    assert CHECKS["gc_vs_writers"](figures), figures


def test_a_full_disk_is_one_clear_error_and_gc_frees_it(tmp_path):
    try:
        figures = full_disk(tmp_path, full=False)
    except small_disk.Unavailable as exc:
        pytest.skip(str(exc))
    assert CHECKS["full_disk"](figures), figures
