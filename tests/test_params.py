"""Parameter values: overrides are converted to the type of the value they replace, or refused."""

from __future__ import annotations

import pytest

from labpipe import ParameterError
from labpipe.params import cast_like


@pytest.mark.parametrize("value, example, expected", [
    ("5", 3, 5), ("5.0", 3, 5), (2.0, 3, 2), ("0.5", 0.1, 0.5), (1, 0.1, 1.0),
    ("yes", False, True), ("off", True, False), (1, False, True),
    ("[1, 2]", [0], [1, 2]), ("[1, 2]", (0,), (1, 2)), ('{"a": 1}', {}, {"a": 1}),
    (5, "name", "5"), (None, 3, None), (7, None, 7),
])
def test_an_override_takes_the_type_of_the_value_it_replaces(value, example, expected):
    got = cast_like(value, example)
    assert got == expected and type(got) is type(expected)


@pytest.mark.parametrize("value, example, why", [
    ("2.7", 3, "not a whole number"), (2.7, 3, "not a whole number"), ("abc", 0.1, "got 'abc'"),
    ("maybe", True, "expected bool"), (2, True, "expected bool"), (True, 3, "expected int"),
    ("[1,", [0], "not JSON"), ('{"a": 1}', [0], "expected list"), ("[1]", {}, "expected dict"),
])
def test_an_override_that_would_not_fit_is_refused_naming_the_parameter(value, example, why):
    with pytest.raises(ParameterError, match="Args/x: expected") as info:
        cast_like(value, example, "Args/x")
    assert why in str(info.value)
