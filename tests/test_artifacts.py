"""Artifacts and blobs: objects, numpy, pandas, files, folders, dedupe, verification, unpicklables."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from labpipe import ArtifactError, BlobCorrupted, StorageManager, Task
from labpipe.store import blobs
from labpipe.store.db import get_database


def _blob_files(store):
    return [p for p in (store / "blobs").rglob("*") if p.is_file()]


def test_numpy_array_round_trips_exactly_with_dtype_shape_and_order():
    t = Task.create(task_name="np")
    for arr in (np.arange(200_000, dtype=np.int32).reshape(400, 500), np.asfortranarray(np.random.rand(300, 70)),
                np.array(3.5), np.zeros((0, 3)), np.array(["a", "bc"])):
        t.upload_artifact("a", arr)
        got = t.artifacts["a"].get()
        assert got.dtype == arr.dtype and got.shape == arr.shape
        np.testing.assert_array_equal(got, arr)
    assert t.artifacts["a"].type == "numpy"


def test_pandas_frame_and_plain_objects_round_trip():
    t = Task.create(task_name="pd")
    df = pd.DataFrame({"a": [1, 2, 3], "b": ["x", "y", "z"]}, index=[10, 20, 30])
    t.upload_artifact("df", df, metadata={"rows": 3})
    art = t.artifacts["df"]
    pd.testing.assert_frame_equal(art.get(), df)
    assert art.type == "pandas" and art.metadata == {"rows": 3} and "DataFrame" in art.preview
    t.upload_artifact("fn", lambda x: x + 1)
    assert t.artifacts["fn"].get()(1) == 2


def test_large_artifact_is_a_file_blob_small_one_is_inline(store):
    t = Task.create(task_name="sizes")
    t.upload_artifact("small", list(range(10)))
    assert _blob_files(store) == []
    t.upload_artifact("big", np.ones(100_000))
    files = _blob_files(store)
    assert len(files) == 1 and files[0].name == t.artifacts["big"].hash
    assert oct(files[0].stat().st_mode & 0o777) == "0o600"


def test_identical_artifacts_are_stored_once(store):
    a, b = Task.create(task_name="a"), Task.create(task_name="b")
    arr = np.arange(100_000)
    a.upload_artifact("x", arr)
    b.upload_artifact("y", arr.copy())
    assert a.artifacts["x"].hash == b.artifacts["y"].hash
    assert len(_blob_files(store)) == 1


def test_file_and_folder_artifacts_restore_as_file_and_folder(tmp_path):
    src = tmp_path / "data.csv"
    src.write_text("a,b\n1,2\n")
    folder = tmp_path / "model"
    (folder / "sub").mkdir(parents=True)
    (folder / "weights.bin").write_bytes(b"\x00\x01" * 50_000)
    (folder / "sub" / "cfg.json").write_text("{}")
    t = Task.create(task_name="files")
    t.upload_artifact("csv", str(src))
    t.upload_artifact("model", folder)
    csv = t.artifacts["csv"]
    assert csv.type == "file" and open(csv.get_local_copy()).read() == "a,b\n1,2\n"
    assert os.path.basename(csv.get_local_copy()) == "data.csv"
    restored = t.artifacts["model"].get_local_copy()
    assert os.path.isdir(restored)
    assert open(os.path.join(restored, "weights.bin"), "rb").read() == b"\x00\x01" * 50_000
    assert open(os.path.join(restored, "sub", "cfg.json")).read() == "{}"
    assert StorageManager.get_local_copy(t.artifacts["csv"].url).endswith("data.csv")
    # the same folder uploaded again has the same address (deterministic archive)
    t.upload_artifact("model2", folder)
    assert t.artifacts["model2"].hash == t.artifacts["model"].hash


def test_unpicklable_artifact_names_artifact_and_type_and_writes_nothing(store):
    t = Task.create(task_name="bad")
    with pytest.raises(ArtifactError, match=r"artifact 'lock'.*_thread\.lock"):
        t.upload_artifact("lock", threading.Lock())
    assert t.artifacts == {}
    assert get_database().query_one("SELECT count(*) FROM inline_blobs")[0] == 0


def test_corrupted_blob_is_detected_before_unpickling_and_names_task_and_artifact(store):
    t = Task.create(task_name="c")
    t.upload_artifact("arr", np.arange(50_000))
    path = blobs.blob_path(get_database(), t.artifacts["arr"].hash)
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(BlobCorrupted, match=rf"artifact 'arr' of task {t.id}.*no longer match"):
        t.artifacts["arr"].get()
    # quarantined: never served again, and the next load says it is missing
    assert not path.exists() and list((store / "quarantine").glob(f"{path.name}.*"))
    with pytest.raises(BlobCorrupted, match="missing"):
        t.artifacts["arr"].get()


def test_corrupted_inline_blob_is_detected():
    t = Task.create(task_name="c")
    t.upload_artifact("small", {"k": 1})
    db = get_database()
    db.execute("UPDATE inline_blobs SET data = ?", (b"garbage",))
    with pytest.raises(BlobCorrupted, match=f"artifact 'small' of task {t.id}"):
        t.artifacts["small"].get()
    assert db.query("SELECT * FROM inline_blobs") == []  # quarantined: its row is gone


def test_output_models_are_stored_and_listed(tmp_path):
    from labpipe import OutputModel

    weights = tmp_path / "w.pt"
    weights.write_bytes(b"weights!")
    t = Task.create(task_name="m")
    m = OutputModel(task=t, name="net", framework="PyTorch")
    url = m.update_weights(weights_filename=str(weights))
    assert url.startswith("labpipe://")
    models = t.models["output"]
    assert [x.name for x in models] == ["net"] and models["net"].framework == "PyTorch"
    assert open(models[-1].get_local_copy(), "rb").read() == b"weights!"
    with pytest.raises(ArtifactError, match="does not exist"):
        m.update_weights(weights_filename=str(tmp_path / "missing"))


@pytest.mark.parametrize("slow", [0.0, float("inf")], ids=["large-writes", "page-writes"])
def test_large_blob_bytes_are_exact_whichever_way_they_are_written(store, monkeypatch, slow):
    # SLOW=0: every large write counts as fast; SLOW=inf: after the probe the blob goes page by page
    monkeypatch.setattr(blobs._ChunkWriter, "SLOW", slow)
    rng = np.random.default_rng(1)
    parts = [b"header-of-odd-length", rng.bytes(3 * (1 << 20) + 4097), rng.bytes(blobs._CHUNK + 13), b"t"]
    db = get_database()
    ref = blobs.prepare(db, parts)
    path = blobs.blob_path(db, ref.hash)
    assert path.read_bytes() == b"".join(parts)
    assert ref.size == path.stat().st_size
    src = store.parent / "src.bin"
    src.write_bytes(b"".join(reversed(parts)))
    ref2 = blobs.prepare_file(db, src)
    assert blobs.blob_path(db, ref2.hash).read_bytes() == src.read_bytes()


def test_a_folder_holding_a_fifo_uploads_its_regular_files_and_skips_the_fifo(tmp_path):
    folder = tmp_path / "data"
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / "a.txt").write_text("A")
    os.mkfifo(folder / "wake.fifo")  # opening it to read would block forever
    t = Task.create(task_name="fifo")
    t.upload_artifact("folder", folder)
    got = Path(t.artifacts["folder"].get_local_copy())
    assert sorted(p.relative_to(got).as_posix() for p in got.rglob("*") if p.is_file()) == ["sub/a.txt"]
