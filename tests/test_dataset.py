"""Dataset (ClearML Data): versions, parents that hold only a child's changes, local copies, bad input."""

from __future__ import annotations

import json
import os
import stat

import pytest
from click.testing import CliRunner

from labpipe import Dataset, DatasetError, Task
from labpipe.cli import main
from labpipe.store import gc
from labpipe.store.db import get_database


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "data"
    (root / "images").mkdir(parents=True)
    (root / "train.csv").write_text("a,b\n1,2\n")
    (root / "images" / "cat.png").write_bytes(b"\x89PNG cat")
    (root / "images" / "dog.png").write_bytes(b"\x89PNG dog")
    (root / "big.bin").write_bytes(os.urandom(200_000))  # above the inline size: a blob file
    return root


def _final(folder, name="raw", project="data", **kw):
    ds = Dataset.create(dataset_name=name, dataset_project=project, **kw)
    ds.add_files(folder)
    ds.upload()
    ds.finalize()
    return ds


def test_files_round_trip_through_a_read_only_cached_local_copy(folder):
    ds = Dataset.create(dataset_name="raw", dataset_project="data")
    assert ds.add_files(folder) == 4
    ds.finalize()
    got = Dataset.get(dataset_project="data", dataset_name="raw")
    assert got.id == ds.id and got.is_final() and got.version == "1.0.0"
    assert got.list_files() == ["big.bin", "images/cat.png", "images/dog.png", "train.csv"]
    copy = got.get_local_copy()
    for rel in got.list_files():
        assert (folder / rel).read_bytes() == open(os.path.join(copy, rel), "rb").read()
        mode = stat.S_IMODE(os.stat(os.path.join(copy, rel)).st_mode)
        assert not mode & 0o222, f"{rel} is writable ({oct(mode)})"
    assert Dataset.get(dataset_id=ds.id[:8]).get_local_copy() == copy  # served from the cache
    task = Task.get_task(task_id=ds.id)
    assert task.status == "completed" and task.task_type == "data_processing" and "dataset" in task.data.system_tags


def test_versions_go_up_and_get_returns_the_highest(folder):
    first = _final(folder)
    second = _final(folder)
    third = _final(folder, dataset_version="2.0.0")
    assert (first.version, second.version, third.version) == ("1.0.0", "1.0.1", "2.0.0")
    assert Dataset.get(dataset_project="data", dataset_name="raw").id == third.id
    assert Dataset.get(dataset_project="data", dataset_name="raw", dataset_version="1.0.1").id == second.id
    assert _final(folder).version == "2.0.1"
    with pytest.raises(DatasetError, match=r"already has a version '1.0.0'"):
        Dataset.create(dataset_name="raw", dataset_project="data", dataset_version="1.0.0")


def test_a_child_holds_its_changes_and_shares_its_parents_bytes(folder, tmp_path):
    parent = _final(folder)
    child = Dataset.create(dataset_name="raw", dataset_project="data", parent_datasets=[parent.id])
    assert child.project == "data" and child.list_files() == parent.list_files()
    changed = tmp_path / "changed"
    changed.mkdir()
    (changed / "train.csv").write_text("a,b\n9,9\n")
    (changed / "extra.txt").write_text("new")
    assert child.add_files(changed) == 2
    assert child.add_files(folder / "images" / "cat.png", dataset_path="images") == 0  # same bytes: nothing changes
    assert child.remove_files("images/dog.png") == 1
    child.finalize()
    assert child.list_added_files() == ["extra.txt"]
    assert child.list_modified_files() == ["train.csv"]
    assert child.list_removed_files() == ["images/dog.png"]
    own = [e.path for e in child.file_entries if e.origin == child.id]
    assert own == ["extra.txt", "train.csv"]
    assert child.file_entries_dict["big.bin"].hash == parent.file_entries_dict["big.bin"].hash
    assert child.get_dependency_graph() == {child.id: [parent.id], parent.id: []}
    assert open(os.path.join(child.get_local_copy(), "train.csv")).read() == "a,b\n9,9\n"
    assert open(os.path.join(parent.get_local_copy(), "train.csv")).read() == "a,b\n1,2\n"


def test_wildcards_dataset_paths_and_sync_folder(folder):
    ds = Dataset.create(dataset_name="pics", dataset_project="data")
    assert ds.add_files(folder, wildcard="*.png", dataset_path="imgs") == 2
    assert ds.list_files() == ["imgs/images/cat.png", "imgs/images/dog.png"]
    assert ds.list_files("imgs/images/c*") == ["imgs/images/cat.png"]
    assert ds.remove_files("*.png") == 2 and ds.list_files() == []
    ds.add_files(folder)
    (folder / "train.csv").unlink()
    (folder / "images" / "cat.png").write_bytes(b"another cat")
    assert ds.sync_folder(folder) == (1, 1)
    assert "train.csv" not in ds.list_files()


def test_mutable_copy_is_writable_and_refuses_a_full_folder_unless_overwrite(folder, tmp_path):
    ds = _final(folder)
    target = tmp_path / "work"
    path = ds.get_mutable_local_copy(target)
    (target / "train.csv").write_text("edited")  # writable
    with pytest.raises(DatasetError, match="is not empty; pass overwrite=True"):
        ds.get_mutable_local_copy(target)
    ds.get_mutable_local_copy(target, overwrite=True)
    assert (target / "train.csv").read_text() == "a,b\n1,2\n" and path == str(target)
    assert ds.verify_dataset_hash() == [] and ds.verify_dataset_hash(local_copy_path=str(target)) == []
    (target / "train.csv").write_text("tampered")
    assert ds.verify_dataset_hash(local_copy_path=str(target)) == ["train.csv"]


def test_bad_input_is_refused_clearly_and_adds_nothing(folder, tmp_path):
    ds = Dataset.create(dataset_name="raw", dataset_project="data")
    with pytest.raises(DatasetError, match=r"add_files\('.*missing'\): no such file or folder"):
        ds.add_files(tmp_path / "missing")
    with pytest.raises(DatasetError, match="not a path inside the dataset"):
        ds.add_files(folder, dataset_path="../outside")
    assert ds.list_files() == []
    with pytest.raises(DatasetError, match="is not finalized; a local copy needs a finalized dataset"):
        ds.get_local_copy()
    with pytest.raises(DatasetError, match="parent dataset .* is not finalized"):
        Dataset.create(dataset_name="child", dataset_project="data", parent_datasets=[ds.id])
    ds.finalize()
    with pytest.raises(DatasetError, match="is finalized; finalize needs a draft"):
        ds.finalize()
    with pytest.raises(DatasetError, match="is finalized; add_files needs a draft"):
        ds.add_files(folder)
    with pytest.raises(DatasetError, match=r"no dataset data/rwa in the store .*; close matches: data/raw"):
        Dataset.get(dataset_project="data", dataset_name="rwa")
    with pytest.raises(DatasetError, match="is not a dataset"):
        Dataset.get(dataset_id=Task.create(task_name="plain").id)
    with pytest.raises(DatasetError, match="needs dataset_project="):
        Dataset.create(dataset_name="orphan")


def test_get_auto_create_and_writable_copy(folder):
    made = Dataset.get(dataset_project="data", dataset_name="fresh", auto_create=True)
    assert not made.is_final() and made.version == "1.0.0"
    made.add_files(folder / "train.csv")
    made.finalize()
    draft = Dataset.get(dataset_project="data", dataset_name="fresh", writable_copy=True)
    assert draft.parents == [made.id] and draft.version == "1.0.1" and draft.list_files() == ["train.csv"]


def test_gc_keeps_dataset_bytes_until_the_dataset_is_deleted(folder):
    ds = _final(folder)
    db = get_database()
    # age every blob past the grace period, as if the dataset were old
    db.write(lambda c: c.execute("UPDATE inline_blobs SET created = 0"))
    for dirpath, _, names in os.walk(db.blobs_dir):
        for n in names:
            os.utime(os.path.join(dirpath, n), (0, 0))
    report = gc.collect(db, grace=60)
    assert report.deleted_files == 0 and report.deleted_inline == 0
    copy = ds.get_local_copy()
    Dataset.delete(dataset_id=ds.id)
    assert not os.path.exists(copy)
    report = gc.collect(db, grace=60)
    assert report.deleted_files == 1 and report.deleted_inline == 3


def test_a_parent_is_not_deleted_while_a_child_uses_it(folder):
    parent = _final(folder)
    Dataset.create(dataset_name="raw", dataset_project="data", parent_datasets=[parent])
    with pytest.raises(DatasetError, match="is a parent of dataset"):
        Dataset.delete(dataset_id=parent.id)
    Dataset.delete(dataset_id=parent.id, force=True)
    with pytest.raises(DatasetError):
        Dataset.get(dataset_id=parent.id)


def test_a_dataset_made_in_a_worker_step_is_read_back_here(folder, stop_shared_pool):
    from labpipe.agent.pool import Pool

    def make(path: str) -> str:
        from labpipe import Dataset

        ds = Dataset.create(dataset_name="from-step", dataset_project="data")
        ds.add_files(path)
        ds.finalize()
        return ds.id

    task = Task.create_function_task(make, func_name="make", task_name="make-dataset", path=str(folder))
    with Pool(queues={"default": 1}):
        Task.enqueue(task, queue_name="default")
        task.wait_for_status(timeout=60)
    assert task.reload().status == "completed", task.get_status_message()
    ds = Dataset.get(dataset_project="data", dataset_name="from-step", only_completed=True)
    assert Task.get_task(task_id=ds.id).parent == task.id  # made by that step, as ClearML records it
    assert len(ds.list_files()) == 4


def test_datasets_command_lists_finalized_ones_and_drafts_with_all(folder):
    final = _final(folder)
    Dataset.create(dataset_name="wip", dataset_project="data")
    out = CliRunner().invoke(main, ["datasets"], catch_exceptions=False).output
    assert final.id[:12] in out and "raw" in out and "wip" not in out
    assert "wip" in CliRunner().invoke(main, ["datasets", "--all"], catch_exceptions=False).output
    rows = json.loads(CliRunner().invoke(main, ["datasets", "--json"], catch_exceptions=False).output)
    assert rows[0]["files"] == 4 and isinstance(rows[0]["size"], int) and rows[0]["size"] > 200_000


def test_a_hostile_file_entry_in_a_shared_store_never_writes_outside_the_copy(folder, tmp_path):
    ds = _final(folder)
    db = get_database()
    db.write(lambda c: c.execute("UPDATE dataset_files SET path = '../../escaped.txt' WHERE dataset = ? AND path = 'train.csv'", (ds.id,)))
    target = tmp_path / "copy"
    with pytest.raises(DatasetError, match=r"'../../escaped.txt' is not a path inside the dataset"):
        ds.get_mutable_local_copy(target)
    assert not list(tmp_path.rglob("escaped.txt"))
    with pytest.raises(DatasetError, match="is not a path inside the dataset"):
        ds.get_local_copy()
    assert not (db.root / "cache" / "datasets" / ds.id).exists()


def test_get_of_a_mistyped_dataset_id_names_it_and_the_close_matches(folder):
    ds = Dataset.create(dataset_name="raw", dataset_project="data")
    typo = ds.id[:-3] + "zzz"
    with pytest.raises(DatasetError, match=rf"Dataset.get: no task with id '{typo}' .*; close matches: {ds.id} \(data/raw v"):
        Dataset.get(dataset_id=typo)
    with pytest.raises(DatasetError, match=r"no task with id 'elsewhere' in the store [^;]*$"):
        Dataset.get(dataset_id="elsewhere")
