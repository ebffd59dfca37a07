"""ClearML's `${step.field}` pipeline references: parsing, validation and substitution."""

from __future__ import annotations

import pytest

from labpipe.errors import PipelineError
from labpipe.pipeline.references import Ref, find_refs, referenced_steps, resolve, validate_ref

STEPS = {"prep", "train"}
PARAMS = {"lr", "queue", "opt.momentum"}


def one(text: str) -> Ref:
    (ref,) = find_refs(text)
    return ref


def check(text: str, *, step: str = "eval", allow_return_values: bool = False) -> None:
    validate_ref(
        one(text),
        step=step,
        known_steps=STEPS,
        pipeline_params=PARAMS,
        allow_return_values=allow_return_values,
    )


# -- parsing ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "step", "path", "kind", "name", "field"),
    [
        ("${pipeline.lr}", "pipeline", ("lr",), "pipeline_param", "lr", None),
        ("${pipeline.opt.momentum}", "pipeline", ("opt", "momentum"), "pipeline_param", "opt.momentum", None),
        ("${pipeline.id}", "pipeline", ("id",), "task_field", "id", "id"),
        ("${prep.id}", "prep", ("id",), "task_field", "id", "id"),
        ("${prep.status}", "prep", ("status",), "task_field", "status", "status"),
        ("${prep.project}", "prep", ("project",), "task_field", "project", "project"),
        ("${prep.tags}", "prep", ("tags",), "task_field", "tags", "tags"),
        ("${prep.parameters.Args/x}", "prep", ("parameters", "Args/x"), "parameter", "Args/x", None),
        (
            "${prep.parameters.General/opt.lr}",
            "prep",
            ("parameters", "General/opt", "lr"),
            "parameter",
            "General/opt.lr",
            None,
        ),
        ("${prep.artifacts.data.url}", "prep", ("artifacts", "data", "url"), "artifact", "data", "url"),
        ("${prep.artifacts.data.hash}", "prep", ("artifacts", "data", "hash"), "artifact", "data", "hash"),
        ("${prep.artifacts.data}", "prep", ("artifacts", "data"), "artifact", "data", "url"),
        ("${train.models.output.-1.url}", "train", ("models", "output", "-1", "url"), "model", "-1", "url"),
        ("${train.models.input.best.id}", "train", ("models", "input", "best", "id"), "model", "best", "id"),
        ("${prep.df}", "prep", ("df",), "return_value", "df", None),
    ],
)
def test_each_reference_form_parses_to_step_path_and_kind(text, step, path, kind, name, field):
    ref = one(text)
    assert (ref.text, ref.step, ref.path, ref.kind, ref.name, ref.field) == (
        text,
        step,
        path,
        kind,
        name,
        field,
    )


def test_model_reference_exposes_its_model_type():
    assert one("${train.models.input.0.url}").model_type == "input"
    assert one("${train.id}").model_type is None


def test_escaped_dot_stays_inside_the_artifact_name():
    ref = one(r"${prep.artifacts.my\.data.url}")
    assert ref.path == ("artifacts", "my.data", "url")
    assert (ref.name, ref.field) == ("my.data", "url")


def test_escaped_dot_also_works_in_a_step_name():
    assert one(r"${v1\.2.id}").step == "v1.2"


def test_several_references_in_one_string_are_found_in_order():
    refs = find_refs("s3://${pipeline.queue}/${prep.artifacts.data.url}?v=${prep.id}")
    assert [r.text for r in refs] == ["${pipeline.queue}", "${prep.artifacts.data.url}", "${prep.id}"]


def test_references_are_found_inside_nested_containers_but_not_in_dict_keys():
    value = {"${nope.id}": ["${prep.id}", ("x", {"k": "${train.df}"})], "n": 3}
    assert [r.text for r in find_refs(value)] == ["${prep.id}", "${train.df}"]


@pytest.mark.parametrize("value", [None, 3, 2.5, True, b"${prep.id}", object(), "no refs here", "$prep.id"])
def test_values_without_references_have_none(value):
    assert find_refs(value) == []


@pytest.mark.parametrize("text", ["${unclosed", "prefix ${prep.id", "$ {prep.id}", "{prep.id}"])
def test_unclosed_or_unbraced_syntax_is_plain_text_as_in_clearml(text):
    assert find_refs(text) == []
    assert resolve(text, lambda ref: pytest.fail("nothing to resolve")) == text


def test_dollar_before_a_reference_is_not_an_escape_as_in_clearml():
    assert resolve("$${prep.id}", lambda ref: "abc") == "$abc"


def test_referenced_steps_are_parents_and_exclude_the_pipeline():
    value = {"a": "${pipeline.lr}", "b": ["${prep.id}", "${train.models.output.-1.url} ${prep.df}"]}
    assert referenced_steps(value) == {"prep", "train"}
    assert referenced_steps("${pipeline.id}") == set()
    assert referenced_steps(42) == set()


# -- resolving -------------------------------------------------------------------------------------


def test_whole_string_reference_returns_the_resolved_value_itself():
    values = {"${pipeline.lr}": 0.1, "${prep.df}": {"rows": [1, 2]}, "${prep.tags}": ["a", "b"]}
    for text, value in values.items():
        assert resolve(text, lambda ref: values[ref.text]) is value


def test_embedded_references_are_formatted_with_str():
    values = {"${pipeline.lr}": 0.1, "${prep.id}": "t1", "${prep.tags}": ["a"]}
    out = resolve("lr=${pipeline.lr} from ${prep.id} tags ${prep.tags}", lambda ref: values[ref.text])
    assert out == "lr=0.1 from t1 tags ['a']"


def test_resolve_recurses_into_lists_tuples_and_dict_values():
    value = {"Args/a": "${prep.id}", "Args/b": ["${pipeline.lr}", ("x-${prep.id}", 7)], "${k}": None}
    out = resolve(value, lambda ref: {"${prep.id}": "t1", "${pipeline.lr}": 0.5}[ref.text])
    assert out == {"Args/a": "t1", "Args/b": [0.5, ("x-t1", 7)], "${k}": None}


def test_resolve_leaves_the_input_unchanged():
    value = {"a": ["${prep.id}"]}
    resolve(value, lambda ref: "t1")
    assert value == {"a": ["${prep.id}"]}


def test_resolver_receives_the_parsed_reference():
    seen = []
    resolve(r"${prep.artifacts.my\.data.size}", lambda ref: seen.append(ref) or 1)
    assert seen == [
        Ref(text=r"${prep.artifacts.my\.data.size}", step="prep", path=("artifacts", "my.data", "size"))
    ]


def test_each_distinct_reference_is_resolved_once_per_call():
    calls = []
    out = resolve(["${prep.id}", "${prep.id}/${prep.id}"], lambda ref: calls.append(ref.text) or "t1")
    assert out == ["t1", "t1/t1"]
    assert calls == ["${prep.id}"]


def test_resolver_errors_propagate():
    def boom(ref):
        raise PipelineError(f"reference {ref.text}: no such artifact")

    with pytest.raises(PipelineError, match=r"\$\{prep.artifacts.x\}"):
        resolve("${prep.artifacts.x}", boom)


# -- validation ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "${pipeline.lr}",
        "${pipeline.opt.momentum}",
        "${pipeline.id}",
        "${prep.id}",
        "${prep.name}",
        "${prep.status}",
        "${prep.project}",
        "${prep.tags}",
        "${prep.type}",
        "${prep.comment}",
        "${prep.parent}",
        "${prep.parameters.Args/x}",
        "${prep.parameters.Args/nested/opt.lr}",
        "${prep.artifacts.data}",
        "${prep.artifacts.data.url}",
        "${prep.artifacts.data.hash}",
        "${prep.artifacts.data.size}",
        "${prep.artifacts.data.preview}",
        "${prep.artifacts.data.type}",
        r"${prep.artifacts.my\.data.url}",
        "${train.models.output.-1.url}",
        "${train.models.output.0.id}",
        "${train.models.input.best.name}",
    ],
)
def test_well_formed_references_to_known_things_validate(text):
    check(text)


def test_return_value_references_validate_only_when_allowed():
    check("${prep.df}", allow_return_values=True)
    with pytest.raises(PipelineError, match="function_kwargs"):
        check("${prep.df}")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("${nope.id}", "unknown step 'nope'"),
        ("${pipeline.batch}", "unknown pipeline parameter 'batch'"),
        ("${prep.artifacts}", "names no artifact"),
        ("${prep.artifacts.data.colour}", "unknown artifact field 'colour'"),
        ("${prep.artifacts.my.data.url}", "unknown artifact field 'data.url'"),
        ("${prep}", "is malformed"),
        ("${}", "is malformed"),
        ("${.id}", "is malformed"),
        ("${prep..id}", "is malformed"),
        ("${prep.parameters}", "names no parameter"),
        ("${prep.parameters.x}", "names no parameter"),
        ("${train.models.output}", "does not name a model"),
        ("${train.models.output.-1}", "does not name a model"),
        ("${train.models.output.-1.colour}", "does not name a model"),
        ("${train.models.best.-1.url}", "names no model list"),
        ("${prep.id.more}", "reads a part of task field 'id'"),
        ("${prep.df.more}", "function_kwargs"),
    ],
)
def test_bad_references_name_the_configured_step_and_the_reference(text, message):
    with pytest.raises(PipelineError) as err:
        check(text, step="eval")
    assert "step 'eval'" in str(err.value)
    assert text in str(err.value)
    assert message in str(err.value)


def test_unknown_step_error_lists_the_known_steps():
    with pytest.raises(PipelineError, match="prep, train"):
        check("${nope.id}")


def test_unknown_pipeline_parameter_error_lists_the_parameters():
    with pytest.raises(PipelineError, match="lr, opt.momentum, queue"):
        check("${pipeline.batch}")


def test_a_step_cannot_reference_itself():
    with pytest.raises(PipelineError, match="step 'prep'.*reads the step it configures"):
        check("${prep.id}", step="prep")


def test_return_value_with_a_path_is_rejected_even_when_allowed():
    with pytest.raises(PipelineError, match="reads past a return value"):
        check("${prep.df.x}", allow_return_values=True)


def test_validation_error_says_where_the_reference_sits():
    with pytest.raises(PipelineError, match=r"in parameter_override\['Args/x'\]"):
        validate_ref(
            one("${nope.id}"),
            step="eval",
            known_steps=STEPS,
            pipeline_params=PARAMS,
            where="parameter_override['Args/x']",
        )


# Every message validate_ref writes, word for word: each kind of reference has its own checker, and
# a user's pipeline that fails validation must read the same whichever one wrote it.
FIELDS = "id, comment, completed, name, parent, project, queue, started, status, status_message, system_tags, tags, type"


@pytest.mark.parametrize(
    ("text", "step", "allow", "message"),
    [
        ("${prep}", "eval", False,
         "reference ${prep} is malformed; expected ${<step>.<field>} such as ${prep.id} or ${pipeline.<parameter>}"),
        ("${pipeline.batch}", "eval", False,
         "reference ${pipeline.batch} names an unknown pipeline parameter 'batch'; the pipeline's parameters are: "
         "lr, opt.momentum, queue; add it with add_parameter()"),
        ("${prep.id}", "prep", False,
         "reference ${prep.id} reads the step it configures; a step can only reference earlier steps"),
        ("${nope.id}", "eval", False,
         "reference ${nope.id} names an unknown step 'nope'; steps defined so far: prep, train; add that step first"),
        ("${prep.id.more}", "eval", False, "reference ${prep.id.more} reads a part of task field 'id'; expected ${prep.id}"),
        ("${prep.parameters.x}", "eval", False,
         "reference ${prep.parameters.x} names no parameter; expected ${prep.parameters.<Section/name>} such as "
         "${prep.parameters.Args/x}"),
        ("${prep.artifacts}", "eval", False,
         "reference ${prep.artifacts} names no artifact; expected ${prep.artifacts.<name>.url}"),
        ("${prep.artifacts.data.colour}", "eval", False,
         "reference ${prep.artifacts.data.colour} reads unknown artifact field 'colour'; expected one of url, hash, "
         "size, preview, type; write a dot inside the artifact name as '\\.'"),
        ("${train.models.best.-1.url}", "eval", False,
         "reference ${train.models.best.-1.url} names no model list; expected "
         "${train.models.output.<index or name>.<field>}"),
        ("${train.models.input.-1}", "eval", False,
         "reference ${train.models.input.-1} does not name a model and one of its fields; expected "
         "${train.models.input.<index or name>.<field>} with field one of url, id, name, framework, tags, task, "
         "hash, size, e.g. ${train.models.input.-1.url}"),
        ("${prep.df}", "eval", False,
         f"reference ${{prep.df}} reads unknown field 'df'; expected {FIELDS}, parameters.*, artifacts.* or "
         "models.*; a function step's return value can only be passed in function_kwargs"),
        ("${prep.df.x}", "eval", True,
         "reference ${prep.df.x} reads past a return value; expected ${prep.df}; write a dot inside the name as '\\.'"),
    ],
)
def test_each_validation_message_is_exactly_as_written(text, step, allow, message):
    with pytest.raises(PipelineError) as err:
        check(text, step=step, allow_return_values=allow)
    assert str(err.value) == f"step {step!r}: {message}"


def test_unknown_step_or_parameter_says_none_are_defined_when_there_are_none():
    with pytest.raises(PipelineError, match="steps defined so far: none; add that step first"):
        validate_ref(one("${prep.id}"), step="eval", known_steps=set(), pipeline_params=set())
    with pytest.raises(PipelineError, match="the pipeline's parameters are: none; add it with add_parameter"):
        validate_ref(one("${pipeline.lr}"), step="eval", known_steps=set(), pipeline_params=set())


def test_pipeline_id_needs_no_parameter_and_no_earlier_step():
    validate_ref(one("${pipeline.id}"), step="eval", known_steps=set(), pipeline_params=set())


def test_a_models_reference_without_its_list_names_no_model_list():
    with pytest.raises(PipelineError, match=r"reference \$\{train.models\} names no model list"):
        check("${train.models}")


def test_a_parameter_name_needs_a_slash_between_section_and_name():
    for text in ("${prep.parameters./x}", "${prep.parameters.x/}", "${prep.parameters./x/}"):
        with pytest.raises(PipelineError, match="names no parameter"):
            check(text)
    check("${prep.parameters./Args/x}")  # a leading slash is tolerated when a section follows


def test_a_return_value_may_only_read_a_known_step():
    with pytest.raises(PipelineError, match="unknown step 'nope'"):
        check("${nope.df}", allow_return_values=True)
