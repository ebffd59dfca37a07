"""ClearML's version counting (datasets and pipelines without a version given)."""

from __future__ import annotations

import pytest

from labpipe.versions import next_version, version_key


@pytest.mark.parametrize(("before", "after"), [
    ("1.0.0", "1.0.1"), ("1.2", "1.3"), ("10", "11"), ("1.0.0rc1", "1.0.0rc2"), ("2.0.post3", "2.0.post4"),
    ("1.0.dev7", "1.0.dev8"), ("not-a-version", "not-a-version.1"),
])
def test_the_last_number_goes_up(before, after):
    assert next_version(before) == after


def test_versions_sort_as_versions():
    assert sorted(["1.10", "1.9", "1.0.0", "junk"], key=version_key) == ["junk", "1.0.0", "1.9", "1.10"]
