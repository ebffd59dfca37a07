"""The rest of ClearML's Dataset names that mean something offline: tags, metadata, dirty/offline state, links."""

from __future__ import annotations

from labpipe import Dataset


def test_tags_and_metadata_are_kept_with_the_dataset(tmp_path):
    (tmp_path / "f.txt").write_text("x")
    ds = Dataset.create(dataset_name="raw", dataset_project="data")
    ds.add_files(str(tmp_path / "f.txt"))
    ds.add_tags(["v1", "clean"])
    ds.set_metadata({"rows": 10, "source": "csv"}, metadata_name="stats")
    assert ds.get_metadata("stats") == {"rows": 10, "source": "csv"} and ds.get_metadata("other") is None
    ds.finalize()
    found = Dataset.get(dataset_project="data", dataset_name="raw")
    assert sorted(found.tags) == ["clean", "v1"] and found.get_metadata("stats")["rows"] == 10


def test_nothing_is_dirty_offline_or_linked():
    ds = Dataset.create(dataset_name="d", dataset_project="data")
    assert ds.is_dirty() is False and Dataset.is_offline() is False
    assert ds.link_entries == [] and ds.link_entries_dict == {}
