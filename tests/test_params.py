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


# One test per kind of target below: each names what that kind accepts beyond the cases above.


@pytest.mark.parametrize("value, expected", [(" Yes ", True), ("TRUE", True), ("", False), (0, False)])
def test_a_bool_override_reads_yes_no_words_in_any_case_and_the_ints_0_and_1(value, expected):
    assert cast_like(value, False) is expected


@pytest.mark.parametrize("value, example, why", [
    ([1], 3, "expected int"), (True, 0.1, "expected float"), ("1e400x", 0.1, "got '1e400x'"),
])
def test_a_number_override_that_is_neither_a_number_nor_numeric_text_is_refused(value, example, why):
    with pytest.raises(ParameterError, match="Args/x: expected") as info:
        cast_like(value, example, "Args/x")
    assert why in str(info.value)


def test_a_number_override_in_scientific_notation_reads_as_a_number():
    assert cast_like("1e3", 3) == 1000 and type(cast_like("1e3", 3)) is int
    assert cast_like("-2.5e-1", 0.1) == -0.25


@pytest.mark.parametrize("value, example, expected", [([1, 2], (0,), (1, 2)), ((1, 2), [0], [1, 2])])
def test_a_list_or_tuple_override_takes_the_sequence_type_it_replaces(value, example, expected):
    got = cast_like(value, example)
    assert got == expected and type(got) is type(expected)


@pytest.mark.parametrize("value, example", [("3", [0]), ('"x"', (0,)), ("null", {})])
def test_json_text_that_is_not_a_list_or_object_is_refused_for_a_container(value, example):
    with pytest.raises(ParameterError, match=f"Args/x: expected {type(example).__name__}"):
        cast_like(value, example, "Args/x")


@pytest.mark.parametrize("value, example", [(3, [0]), ((1,), {}), ("x", {1}), (5, b"")])
def test_an_override_with_no_conversion_for_its_target_is_passed_on_unchanged(value, example):
    assert cast_like(value, example) is value
