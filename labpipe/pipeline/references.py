"""ClearML's pipeline references: `${step.field}` strings parsed, checked and substituted.

A reference lets one step's configuration name another step's results (or the pipeline's own
parameters), resolved when the step launches::

    pipe.add_step("train", parameter_override={"Args/data": "${prep.artifacts.data.url}"},
                  execution_queue="${pipeline.queue}")
    pipe.add_function_step("fit", fit, function_kwargs={"df": "${prep.df}"})

This module is pure: it never reads the store. The caller passes what it knows (step names,
pipeline parameters) to `validate_ref`, and a `resolver` that looks one `Ref` up to `resolve`.

Grammar (as ClearML's `PipelineController`)::

    reference   := "${" step "." part ("." part)* "}"      anything but "}" between the braces
    part        := characters other than ".", where "\\." stands for a literal dot

    ${pipeline.<param>}                          a pipeline parameter (`add_parameter`)
    ${pipeline.id}                               the pipeline's own task id
    ${step.id|name|status|project|type|tags|...} a field of the step's task (`TASK_FIELDS`)
    ${step.parameters.<Section/name>}            a parameter of the step's task; the name may
                                                 hold slashes and dots (`Args/opt.lr`)
    ${step.artifacts.<name>[.<field>]}           an artifact; field one of `ARTIFACT_FIELDS`,
                                                 "url" when left out; `\\.` escapes a dot in <name>
    ${step.models.input|output.<index or name>.<field>}
                                                 a model, e.g. `${train.models.output.-1.url}`;
                                                 field one of `MODEL_FIELDS`
    ${step.<return name>}                        in `add_function_step` kwargs only: the object a
                                                 function step returned under that name

Why the details are as they are:
- A reference is `\\${[^}]*}`, ClearML's pattern: there is no escape for a literal "${", and an
  unclosed "${..." is plain text, left alone.
- `${step.artifacts.name}` without a field gives the artifact's url. (ClearML stringifies its
  Artifact object there, which is of no use to anyone; the url is what every example wants.)
- "pipeline" is not a step name: `${pipeline.id}` always means the pipeline's task id, so a
  pipeline parameter called "id" cannot be referenced.
- A function step's return name that is a reserved word ("id", "artifacts", ...) reads the task
  field or section, not the returned object; pick another name.
- ClearML's nested task properties (`${step.script.branch}`, `${step.execution.queue}`) are not
  supported: labpipe tasks keep those elsewhere; `${step.queue}` gives the queue.
- Whole-string references keep their type (an int parameter stays an int, a returned DataFrame
  stays a DataFrame); references inside a longer string are formatted with `str()`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

from labpipe.errors import PipelineError

__all__ = [
    "ARTIFACT_FIELDS",
    "MODEL_FIELDS",
    "PIPELINE",
    "TASK_FIELDS",
    "Ref",
    "RefKind",
    "find_refs",
    "referenced_steps",
    "resolve",
    "validate_ref",
]

#: The step name that means "the pipeline itself".
PIPELINE = "pipeline"
#: Fields of a step's task that `${step.<field>}` reads.
TASK_FIELDS = frozenset(
    {
        "id",
        "name",
        "status",
        "project",
        "type",
        "tags",
        "system_tags",
        "comment",
        "parent",
        "status_message",
        "queue",
        "started",
        "completed",
    }
)
#: What `${step.artifacts.<name>.<field>}` may read.
ARTIFACT_FIELDS = ("url", "hash", "size", "preview", "type")
#: What `${step.models.<input|output>.<index or name>.<field>}` may read.
MODEL_FIELDS = ("url", "id", "name", "framework", "tags", "task", "hash", "size")
MODEL_TYPES = ("input", "output")

RefKind = Literal["pipeline_param", "task_field", "parameter", "artifact", "model", "return_value", "invalid"]

# ClearML's own pattern: "${", anything but "}", "}". No nesting, no escape for "$".
_REF = re.compile(r"\$\{[^}]*\}")
# A dot splits parts unless a backslash escapes it.
_SPLIT = re.compile(r"(?<!\\)\.")
_SECTIONS = {"parameters": "parameter", "artifacts": "artifact", "models": "model"}


@dataclass(frozen=True)
class Ref:
    """One `${...}` reference.

    text: the whole reference as written, e.g. "${prep.artifacts.my\\.data.url}".
    step: the step it reads from, or "pipeline" for the pipeline's parameters and id.
    path: the parts after the step, with "\\." unescaped: ("artifacts", "my.data", "url").
    """

    text: str
    step: str
    path: tuple[str, ...]

    @classmethod
    def parse(cls, text: str) -> Ref:
        """The `Ref` for one "${...}" string (not checked: see `validate_ref`)."""
        parts = [p.replace("\\.", ".") for p in _SPLIT.split(text[2:-1])]
        return cls(text=text, step=parts[0], path=tuple(parts[1:]))

    @property
    def kind(self) -> RefKind:
        """What the reference reads; "invalid" when it names no path at all (`${step}`)."""
        if not self.path or not self.step:
            return "invalid"
        head = self.path[0]
        if self.step == PIPELINE:
            return "task_field" if self.path == ("id",) else "pipeline_param"
        if head in _SECTIONS:
            return _SECTIONS[head]  # type: ignore[return-value]
        if head in TASK_FIELDS:
            return "task_field"
        return "return_value"

    @property
    def name(self) -> str | None:
        """The named thing: parameter ("Args/x"), artifact, model index or name, task field, return name."""
        kind = self.kind
        if kind in ("pipeline_param", "task_field", "return_value"):
            return ".".join(self.path)
        if kind == "parameter":
            # ClearML joins the rest back, so a parameter name may contain dots.
            return ".".join(self.path[1:]) or None
        if kind == "artifact":
            return self.path[1] if len(self.path) > 1 else None
        if kind == "model":
            return self.path[2] if len(self.path) > 2 else None
        return None

    @property
    def model_type(self) -> str | None:
        """ "input" or "output" for a model reference, else None."""
        return self.path[1] if self.kind == "model" and len(self.path) > 1 else None

    @property
    def field(self) -> str | None:
        """The field read: an artifact's ("url" by default), a model's, or the task field; else None."""
        kind = self.kind
        if kind == "artifact":
            return self.path[2] if len(self.path) > 2 else "url"
        if kind == "model":
            return self.path[3] if len(self.path) > 3 else None
        if kind == "task_field":
            return self.path[0]
        return None


def find_refs(value: Any) -> list[Ref]:
    """Every reference in `value` (a str, or lists, tuples and dict values holding strs), in order.

    Anything else (numbers, None, objects) holds no reference. Dict keys are never references.
    """
    if isinstance(value, str):
        return [Ref.parse(m.group()) for m in _REF.finditer(value)] if "${" in value else []
    if isinstance(value, dict):
        return [ref for v in value.values() for ref in find_refs(v)]
    if isinstance(value, (list, tuple)):
        return [ref for v in value for ref in find_refs(v)]
    return []


def referenced_steps(value: Any) -> set[str]:
    """The steps that `value` references, which are therefore its parents ("pipeline" is not a step)."""
    return {ref.step for ref in find_refs(value) if ref.step and ref.step != PIPELINE}


def validate_ref(
    ref: Ref,
    *,
    step: str,
    known_steps: set[str],
    pipeline_params: set[str],
    allow_return_values: bool = False,
    where: str = "",
) -> None:
    """Raise `PipelineError` unless `ref` is well formed and names something that exists.

    Args:
        ref: the reference to check.
        step: the step being configured (named in the error).
        known_steps: the steps defined so far (a reference may only read an earlier step).
        pipeline_params: the pipeline's parameter names, as given to `add_parameter`.
        allow_return_values: accept `${step.<return name>}` (function-step kwargs only).
        where: optional, where the reference sits, e.g. "parameter_override['Args/x']".

    Checks shape only: whether a step really has that artifact or parameter is known at launch,
    when the caller's resolver looks it up. The checks run in order (the shape, then the step it
    reads, then what it reads there: one checker per kind), and the first problem is the error.
    """
    problem = _shape_problem(ref)
    if problem is None and ref.step == PIPELINE:
        problem = _pipeline_problem(ref, pipeline_params)
    elif problem is None:
        problem = _step_problem(ref, step, known_steps) or _field_problem(ref, allow_return_values)
    if problem is not None:
        place = f" in {where}" if where else ""
        raise PipelineError(f"step {step!r}: reference {ref.text}{place} {problem.what}; {problem.expected}")


class _Problem(NamedTuple):
    """What is wrong with a reference ("names no artifact") and what was expected instead."""

    what: str
    expected: str


def _shape_problem(ref: Ref) -> _Problem | None:
    """A reference without a step, without a path, or with an empty part (`${prep..id}`)."""
    if not ref.step or not ref.path or any(not p for p in ref.path):
        return _Problem("is malformed", "expected ${<step>.<field>} such as ${prep.id} or ${pipeline.<parameter>}")
    return None


def _pipeline_problem(ref: Ref, pipeline_params: set[str]) -> _Problem | None:
    """`${pipeline.<param>}` naming a parameter the pipeline does not have (`${pipeline.id}` is always fine)."""
    if ref.kind == "pipeline_param" and ref.name not in pipeline_params:
        known = ", ".join(sorted(pipeline_params)) or "none"
        return _Problem(
            f"names an unknown pipeline parameter {ref.name!r}",
            f"the pipeline's parameters are: {known}; add it with add_parameter()",
        )
    return None


def _step_problem(ref: Ref, step: str, known_steps: set[str]) -> _Problem | None:
    """A reference to the step it configures, or to a step not defined before it."""
    if ref.step == step:
        return _Problem("reads the step it configures", "a step can only reference earlier steps")
    if ref.step not in known_steps:
        known = ", ".join(sorted(known_steps)) or "none"
        return _Problem(f"names an unknown step {ref.step!r}", f"steps defined so far: {known}; add that step first")
    return None


def _field_problem(ref: Ref, allow_return_values: bool) -> _Problem | None:
    """What a step reference reads, checked by the checker for its kind."""
    if ref.kind == "return_value":
        return _return_value_problem(ref, allow_return_values)
    return _KIND_CHECKS[ref.kind](ref)


def _task_field_problem(ref: Ref) -> _Problem | None:
    """`${step.<task field>}` with more after it (`${prep.id.more}`)."""
    if len(ref.path) != 1:
        return _Problem(f"reads a part of task field {ref.path[0]!r}", f"expected ${{{ref.step}.{ref.path[0]}}}")
    return None


def _parameter_problem(ref: Ref) -> _Problem | None:
    """`${step.parameters...}` naming no "Section/name"."""
    if len(ref.path) < 2 or "/" not in ref.name.strip("/"):
        return _Problem(
            "names no parameter",
            f"expected ${{{ref.step}.parameters.<Section/name>}} such as ${{{ref.step}.parameters.Args/x}}",
        )
    return None


def _artifact_problem(ref: Ref) -> _Problem | None:
    """`${step.artifacts...}` naming no artifact, or a field not in `ARTIFACT_FIELDS`."""
    path = ref.path
    if len(path) < 2:
        return _Problem("names no artifact", f"expected ${{{ref.step}.artifacts.<name>.url}}")
    if len(path) > 3 or ref.field not in ARTIFACT_FIELDS:
        return _Problem(
            f"reads unknown artifact field {'.'.join(path[2:])!r}",
            f"expected one of {', '.join(ARTIFACT_FIELDS)}; write a dot inside the artifact name as '\\.'",
        )
    return None


def _model_problem(ref: Ref) -> _Problem | None:
    """`${step.models...}` without "input" or "output", or without a model and one of `MODEL_FIELDS`."""
    if len(ref.path) < 2 or ref.model_type not in MODEL_TYPES:
        return _Problem("names no model list", f"expected ${{{ref.step}.models.output.<index or name>.<field>}}")
    if len(ref.path) != 4 or ref.field not in MODEL_FIELDS:
        return _Problem(
            "does not name a model and one of its fields",
            f"expected ${{{ref.step}.models.{ref.model_type}.<index or name>.<field>}} with field one "
            f"of {', '.join(MODEL_FIELDS)}, e.g. ${{{ref.step}.models.{ref.model_type}.-1.url}}",
        )
    return None


def _return_value_problem(ref: Ref, allow_return_values: bool) -> _Problem | None:
    """`${step.<name>}` that is no task field: a return value where none may be passed, or a path past one."""
    path = ref.path
    if not allow_return_values:
        return _Problem(
            f"reads unknown field {path[0]!r}",
            f"expected id, {', '.join(sorted(TASK_FIELDS - {'id'}))}, parameters.*, artifacts.* or "
            "models.*; a function step's return value can only be passed in function_kwargs",
        )
    if len(path) != 1:
        return _Problem(
            "reads past a return value",
            f"expected ${{{ref.step}.{path[0]}}}; write a dot inside the name as '\\.'",
        )
    return None


_KIND_CHECKS: dict[str, Callable[[Ref], _Problem | None]] = {
    "task_field": _task_field_problem,
    "parameter": _parameter_problem,
    "artifact": _artifact_problem,
    "model": _model_problem,
}


def resolve(value: Any, resolver: Callable[[Ref], Any]) -> Any:
    """`value` with every reference replaced by `resolver(ref)`; lists, tuples and dict values too.

    A string that is exactly one reference becomes the resolved value itself (not a str); a
    reference inside a longer string is formatted in with `str()`. Each distinct reference is
    resolved once per call, since a resolver may read the store.
    """
    cache: dict[str, Any] = {}

    def lookup(text: str) -> Any:
        if text not in cache:
            cache[text] = resolver(Ref.parse(text))
        return cache[text]

    def walk(v: Any) -> Any:
        if isinstance(v, str):
            if "${" not in v:
                return v
            if _REF.fullmatch(v):
                return lookup(v)
            return _REF.sub(lambda m: str(lookup(m.group())), v)
        if isinstance(v, dict):
            return {k: walk(x) for k, x in v.items()}
        if isinstance(v, list):
            return [walk(x) for x in v]
        if isinstance(v, tuple):
            return tuple(walk(x) for x in v)
        return v

    return walk(value)


def check_closed(step: str, values: Any) -> None:
    """A "${" that never closes is a typo of a reference, not a literal the user meant: say so."""
    stack = [values]
    while stack:
        value = stack.pop()
        if isinstance(value, str):
            if "${" in _REF.sub("", value):
                raise PipelineError(f"step {step!r}: {value!r} holds a '${{' that is not closed by '}}'; "
                                    "a reference is written ${step.field}")
        elif isinstance(value, dict):
            stack.extend(value.values())
        elif isinstance(value, (list, tuple)):
            stack.extend(value)
