"""What labpipe writes for artifacts stays inside its folder: hostile recorded names, hostile zips and
planted links are refused or made harmless (labpipe/contained.py, artifacts.materialize, `labpipe artifact -o`)."""

from __future__ import annotations

import io
import os
import stat
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from labpipe import StorageManager, Task
from labpipe.cli import main
from labpipe.contained import copy_tree, extract_zip, file_name_for
from labpipe.errors import ArtifactError, UnsafePath
from labpipe.store import blobs, outputs
from labpipe.store.db import get_database


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def _hostile_row(task: Task, filename: str, kind: str = "file", data: bytes = b"payload") -> str:
    """An artifact row as another user or an older labpipe could have written it: its file name unchecked."""
    db = get_database()
    ref = blobs.prepare(db, [data])
    outputs.put_artifact(db, task.id, "hostile", ref, kind=kind, filename=filename)
    return ref.hash


def _zip(*entries: tuple[str, bytes, int]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data, mode in entries:
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = mode << 16
            zf.writestr(info, data)
    return buf.getvalue()


def test_file_name_for_keeps_good_names_and_defuses_bad_ones():
    assert file_name_for("table", ".pkl", fallback="h") == "table.pkl"
    assert file_name_for("../../etc/passwd", fallback="h") == ".._.._etc_passwd"
    assert file_name_for("/abs", fallback="h") == "_abs"
    assert file_name_for("..", fallback="h") == "h" and file_name_for("", fallback="h") == "h"
    assert file_name_for("a\0b\nc", fallback="h") == "a_b_c"
    long = file_name_for("é" * 5000, ".pkl", fallback="h")
    assert long.endswith(".pkl") and len(long.encode()) <= 255


@pytest.mark.parametrize("filename", ["../../../../escaped.txt", "/tmp/labpipe-escaped-abs", "a/../../b", "..", "x" * 5000, "a\0b"])
def test_a_hostile_recorded_file_name_is_written_inside_the_cache(store, tmp_path, filename):
    task = Task.create(task_name="t")
    digest = _hostile_row(task, filename)
    before = set(tmp_path.parent.iterdir())
    path = Path(task.artifacts["hostile"].get_local_copy())
    assert path.parent == store / "cache" / digest and path.read_bytes() == b"payload"
    assert set(tmp_path.parent.iterdir()) == before
    assert not Path("/tmp/labpipe-escaped-abs").exists()
    # the same row through a labpipe:// url and StorageManager
    assert Path(StorageManager.get_local_copy(task.artifacts["hostile"].url)).parent == store / "cache" / digest


def test_a_hostile_recorded_name_cannot_steer_labpipe_artifact_o_out_of_its_folder(tmp_path):
    task = Task.create(task_name="t")
    _hostile_row(task, "../escaped.txt")
    out = tmp_path / "out"
    out.mkdir()
    result = CliRunner().invoke(main, ["artifact", task.id, "hostile", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert (out / ".._escaped.txt").read_bytes() == b"payload"
    assert not (tmp_path / "escaped.txt").exists()
    assert _mode(out / ".._escaped.txt") == 0o600


@pytest.mark.parametrize("entry", ["../escaped.txt", "/tmp/labpipe-escaped-zip", "a/../../escaped.txt"])
def test_a_folder_artifact_whose_zip_climbs_out_is_refused(store, tmp_path, entry):
    task = Task.create(task_name="t")
    _hostile_row(task, "folder", kind="folder", data=_zip((entry, b"bad", 0o644)))
    with pytest.raises(UnsafePath, match="refusing to extract"):
        task.artifacts["hostile"].get_local_copy()
    assert not (store / "cache" / "escaped.txt").exists() and not Path("/tmp/labpipe-escaped-zip").exists()
    assert not list((store / "cache").rglob("escaped.txt"))
    result = CliRunner().invoke(main, ["artifact", task.id, "hostile", "-o", str(tmp_path / "copy")])
    assert result.exit_code == 1 and "refusing to extract" in result.output and "Traceback" not in result.output


def test_zip_entries_that_are_links_or_duplicates_are_refused(tmp_path):
    with pytest.raises(UnsafePath, match="symbolic link"):
        extract_zip(_zip(("link", b"/etc/passwd", stat.S_IFLNK | 0o777)), tmp_path / "a", what="test")
    with pytest.warns(UserWarning, match="Duplicate name"):
        twice = _zip(("f", b"1", 0o644), ("f", b"2", 0o644))
    with pytest.raises(UnsafePath, match="appears twice"):
        extract_zip(twice, tmp_path / "b", what="test")


def test_extracted_folders_are_0700_and_files_0600_keeping_only_the_owners_execute_bit(tmp_path):
    old = os.umask(0o022)
    try:
        extract_zip(_zip(("d/run.sh", b"#!/bin/sh\n", 0o755), ("d/data.csv", b"a\n", 0o644), ("e/", b"", 0o755)),
                    tmp_path / "x", what="test")
    finally:
        os.umask(old)
    top = tmp_path / "x"
    assert _mode(top) == _mode(top / "d") == _mode(top / "e") == 0o700
    assert _mode(top / "d" / "data.csv") == 0o600 and _mode(top / "d" / "run.sh") == 0o700


def test_a_link_planted_in_the_cache_is_refused_not_followed(store, tmp_path):
    task = Task.create(task_name="t")
    task.upload_artifact("table", {"a": 1})
    art = task.artifacts["table"]
    victim = tmp_path / "victim"
    victim.write_text("keep")
    folder = store / "cache" / art.hash
    folder.mkdir(parents=True)
    (folder / "table.pkl").symlink_to(victim)
    with pytest.raises(UnsafePath, match="symbolic link"):
        art.get_local_copy()
    assert victim.read_text() == "keep"
    (folder / "table.pkl").unlink()
    folder.rmdir()
    folder.symlink_to(tmp_path)  # the folder itself a link
    with pytest.raises(UnsafePath, match="symbolic link"):
        art.get_local_copy()
    assert not (tmp_path / "table.pkl").exists()


def test_labpipe_artifact_o_never_writes_through_a_link_inside_the_folder(tmp_path):
    task = Task.create(task_name="t")
    task.upload_artifact("table", {"a": 1})
    out, victim = tmp_path / "out", tmp_path / "victim"
    out.mkdir()
    victim.write_text("keep")
    (out / "table.pkl").symlink_to(victim)
    result = CliRunner().invoke(main, ["artifact", task.id, "table", "-o", str(out)])
    assert result.exit_code == 1 and "leads outside" in result.output and "Traceback" not in result.output
    assert victim.read_text() == "keep"
    (out / "table.pkl").unlink()
    (out / "inner-victim").write_text("keep")
    (out / "table.pkl").symlink_to(out / "inner-victim")  # a link that stays inside: refused all the same
    result = CliRunner().invoke(main, ["artifact", task.id, "table", "-o", str(out)])
    assert result.exit_code == 1 and "symbolic link" in result.output
    assert (out / "inner-victim").read_text() == "keep"
    # a folder artifact into a folder holding a link where one of its sub-folders goes
    data = tmp_path / "data"
    (data / "sub").mkdir(parents=True)
    (data / "sub" / "f.txt").write_text("new")
    task.upload_artifact("data", data)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (out / "data").mkdir()
    (out / "data" / "sub").symlink_to(elsewhere)
    result = CliRunner().invoke(main, ["artifact", task.id, "data", "-o", str(out)])
    assert result.exit_code == 1 and "symbolic link" in result.output
    assert list(elsewhere.iterdir()) == []


def test_copy_tree_replaces_a_hard_linked_file_instead_of_writing_through_it(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    dst.mkdir()
    (src / "f").write_text("new")
    victim = tmp_path / "victim"
    victim.write_text("keep")
    os.link(victim, dst / "f")
    copy_tree(src, dst)
    assert (dst / "f").read_text() == "new" and victim.read_text() == "keep"


def test_a_user_typed_output_path_may_be_a_link_to_a_folder(tmp_path):
    task = Task.create(task_name="t")
    task.upload_artifact("table", {"a": 1})
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to(real)
    result = CliRunner().invoke(main, ["artifact", task.id, "table", "-o", str(tmp_path / "link")])
    assert result.exit_code == 0, result.output
    assert (real / "table.pkl").is_file()


def test_a_damaged_content_address_in_a_row_is_refused(store):
    task = Task.create(task_name="t")
    db = get_database()
    db.write(lambda c: c.execute(
        "INSERT INTO artifacts (task, name, hash, size, kind, filename, preview, metadata, created) "
        "VALUES (?, 'bad', '../../../x', 1, 'file', 'f', '', '{}', 0)", (task.id,)))
    with pytest.raises(ArtifactError, match="is not a blob hash"):
        task.artifacts["bad"].get_local_copy()
    assert not (store.parent / "x").exists()


def test_a_folder_artifact_named_at_the_length_limit_keeps_its_zip_apart_from_its_folder(tmp_path):
    name = "d" * 255
    folder = tmp_path / name
    folder.mkdir()
    (folder / "f.txt").write_text("x")
    task = Task.create(task_name="t")
    task.upload_artifact("data", folder)
    art = task.artifacts["data"]
    extracted, zipped = Path(art.get_local_copy()), Path(art.get_local_copy(extract_archive=False))
    assert extracted.is_dir() and zipped.is_file() and zipped.name.endswith(".zip") and extracted != zipped
    assert Path(StorageManager.get_local_copy(art.url, extract_archive=False)) == zipped
