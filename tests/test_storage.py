"""StorageManager: local paths, file://, http:// (a real local server), labpipe://, upload."""

from __future__ import annotations

import http.server
import threading

import pytest

from labpipe import StorageManager, Task


@pytest.fixture
def http_root(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    handler = lambda *a, **k: http.server.SimpleHTTPRequestHandler(*a, directory=str(root), **k)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_local_and_file_urls_resolve_to_the_file(tmp_path):
    f = tmp_path / "x.txt"
    f.write_text("hi")
    assert StorageManager.get_local_copy(str(f)) == str(f)
    assert StorageManager.get_local_copy(f"file://{f}") == str(f)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        StorageManager.get_local_copy(str(tmp_path / "missing"))


def test_http_download_is_cached_under_the_store(http_root, store):
    root, base = http_root
    (root / "data.bin").write_bytes(b"payload")
    path = StorageManager.get_local_copy(f"{base}/data.bin")
    assert open(path, "rb").read() == b"payload" and path.startswith(str(store))
    (root / "data.bin").write_bytes(b"changed")
    assert StorageManager.get_local_copy(f"{base}/data.bin") == path  # cached
    assert open(StorageManager.get_local_copy(f"{base}/data.bin", force_download=True), "rb").read() == b"changed"
    with pytest.raises(FileNotFoundError, match="cannot download"):
        StorageManager.get_local_copy(f"{base}/nope.bin")


def test_artifact_url_resolves_through_storage_manager():
    t = Task.create(task_name="u")
    t.upload_artifact("obj", {"a": 1})
    import pickle

    with open(StorageManager.get_local_copy(t.artifacts["obj"].url), "rb") as fh:
        assert pickle.load(fh) == {"a": 1}


def test_upload_file_copies_to_a_local_destination(tmp_path):
    src = tmp_path / "a.txt"
    src.write_text("A")
    dest = tmp_path / "remote" / "b.txt"
    assert StorageManager.upload_file(str(src), f"file://{dest}") == f"file://{dest}"
    assert dest.read_text() == "A"
    with pytest.raises(ValueError, match="local paths or file://"):
        StorageManager.upload_file(str(src), "s3://bucket/x")


def test_exists_and_size_of_local_http_and_artifact_urls(tmp_path, http_root):
    root, base = http_root
    (root / "data.csv").write_text("a,b\n1,2\n")
    local = tmp_path / "x.bin"
    local.write_bytes(b"12345")
    task = Task.create(task_name="t")
    task.upload_artifact("blob", artifact_object=str(local))
    url = task.artifacts["blob"].url
    assert StorageManager.exists_file(str(local)) and StorageManager.exists_file(f"file://{local}")
    assert StorageManager.exists_file(f"{base}/data.csv") and not StorageManager.exists_file(f"{base}/missing.csv")
    assert StorageManager.exists_file(url) and not StorageManager.exists_file(str(tmp_path / "nope"))
    assert StorageManager.get_file_size_bytes(str(local)) == 5 and StorageManager.get_file_size_bytes(url) == 5
    assert StorageManager.get_file_size_bytes(f"{base}/data.csv") == 8
    assert StorageManager.get_file_size_bytes(str(tmp_path / "nope"), silence_errors=True) is None
    with pytest.raises(FileNotFoundError, match="get_file_size_bytes: .*nope is not a file labpipe can reach"):
        StorageManager.get_file_size_bytes(str(tmp_path / "nope"))
    with pytest.raises(ValueError, match=r"exists_file: unsupported url scheme 's3'"):
        StorageManager.exists_file("s3://bucket/key")


def test_list_metadata_and_download_folder_of_a_local_folder(tmp_path):
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_text("a")
    (src / "sub" / "b.csv").write_text("bb")
    assert StorageManager.list(str(src)) == ["a.txt", "sub/b.csv"]
    assert StorageManager.list(f"file://{src}", with_metadata=True)[1] == {"name": "sub/b.csv", "size": 2}
    assert StorageManager.get_metadata(str(src / "a.txt")) == {"name": "a.txt", "size": 1}
    assert StorageManager.get_metadata(str(src / "none")) is None
    out = StorageManager.download_folder(str(src), str(tmp_path / "dst"), match_wildcard="*.csv")
    assert StorageManager.list(out) == ["sub/b.csv"]
    cached = StorageManager.download_folder(str(src))
    assert StorageManager.list(cached) == ["a.txt", "sub/b.csv"] and "/cache/folders/" in cached
    with pytest.raises(ValueError, match=r"StorageManager.list: labpipe reads only local paths and file:// URLs here, not s3://b/k"):
        StorageManager.list("s3://b/k")
    StorageManager.set_report_upload_chunk_size(10)  # no progress to report: accepted
    StorageManager.set_report_download_chunk_size(10)
