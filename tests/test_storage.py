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
