"""The pipeline graph: steps (nodes), who feeds whom, and where each step stands.

Pure data, no store access: the decorator records a node per component call, the controller
builds one from `add_step`/`add_function_step`, both advance it with `ready()`/`set_status()`,
store it as JSON and draw it with `labpipe.pipeline.dag_plot.plot_dag`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from labpipe.errors import PipelineError
from labpipe.offline import install_on

NODE_STATUSES = ("pending", "queued", "running", "completed", "cached", "failed", "aborted", "skipped")
NODE_KINDS = ("function", "task", "pipeline")
DONE_STATUSES = frozenset({"completed", "cached", "failed", "aborted", "skipped"})
SUCCEEDED_STATUSES = frozenset({"completed", "cached"})

# Bumped when the JSON layout changes incompatibly; from_dict refuses a newer one.
FORMAT_VERSION = 1


@dataclass
class Node:
    """One pipeline step.

    Args:
        name: the step's name, unique in its pipeline.
        parents: names of the steps whose results this step needs; it runs after all of them succeed.
        status: one of `NODE_STATUSES`.
        task_id: the step's task; for a cached node, the earlier task whose results are reused.
        kind: "function" (a component or function step), "task" (a cloned task) or "pipeline" (nested).
        queue: the queue the step's task is (or will be) enqueued on.
        started, completed: epoch seconds, when known.
        error: why the step failed, was aborted or was skipped.
        stage: the ClearML execution stage, if any.
        extra: JSON-able details (parameter overrides, monitored metrics, ...).
    """

    name: str
    parents: list[str] = field(default_factory=list)
    status: str = "pending"
    task_id: str | None = None
    kind: str = "function"
    queue: str | None = None
    started: float | None = None
    completed: float | None = None
    error: str | None = None
    stage: str | None = None
    extra: dict = field(default_factory=dict)

    @property
    def duration(self) -> float | None:
        """Seconds from start to completion, or None while either is unknown."""
        if self.started is None or self.completed is None:
            return None
        return max(0.0, self.completed - self.started)

    @property
    def done(self) -> bool:
        """True once the step will not change any more (succeeded, failed, aborted or skipped)."""
        return self.status in DONE_STATUSES

    @property
    def succeeded(self) -> bool:
        """True if the step's results are available (completed, or reused from the cache)."""
        return self.status in SUCCEEDED_STATUSES

    # -- ClearML's PipelineController.Node attributes (what callbacks read) -------------------
    # They come from the step's definition, which the pipeline run attaches (`attach`); a node built
    # from stored records (a drawn DAG) has none, and these answer None / empty.

    def attach(self, spec: Any, job: Any = None) -> None:
        """Give the node its step definition (a StepSpec) and, once launched, its job (see run.StepJob)."""
        self._spec = spec
        if job is not None:
            self._job = job

    def _from_spec(self, name: str, default: Any = None) -> Any:
        """What the step was declared with: a field of its spec (function, kwargs) or of its options."""
        spec = getattr(self, "_spec", None)
        if spec is None:
            return default
        if name in ("function", "kwargs"):
            return getattr(spec, name, default)
        return getattr(spec.options, name, default)

    @property
    def base_task_id(self) -> str | None:
        return self._from_spec("base_task_id")

    @property
    def parameters(self) -> dict:
        """The step's parameter overrides ({'Args/x': ...}; a function step: its kwargs)."""
        return dict(self._from_spec("parameter_override") or self._from_spec("kwargs") or {})

    @property
    def configurations(self) -> dict:
        return dict(self._from_spec("configuration_overrides") or {})

    @property
    def task_overrides(self) -> dict:
        return dict(self._from_spec("task_overrides") or {})

    @property
    def timeout(self) -> float | None:
        """The step's time limit in seconds (ClearML's time_limit), or None."""
        return self._from_spec("time_limit")

    @property
    def executed(self) -> str | None:
        """The id of the task that ran (or, for a cached step, had run) the step, once it succeeded."""
        return self.task_id if self.succeeded else None

    @property
    def clone_task(self) -> bool:
        return bool(self._from_spec("clone_base_task", True))

    @property
    def job(self) -> Any:
        """The launched step's job: `job.task` (the Task) and `job.task_id()`; None before launch."""
        return getattr(self, "_job", None)

    @property
    def job_type(self) -> str | None:
        return self._from_spec("task_type")

    @property
    def job_started(self) -> float | None:
        return self.started

    @property
    def job_ended(self) -> float | None:
        return self.completed

    @property
    def job_code_section(self) -> str | None:
        function = self._from_spec("function")
        return getattr(function, "__name__", None)

    @property
    def skip_job(self) -> bool:
        return self.status == "skipped"

    @property
    def cache_executed_step(self) -> bool:
        return bool(self._from_spec("cache", False))

    @property
    def return_artifacts(self) -> list[str]:
        return list(self._from_spec("return_values") or [])

    @property
    def monitor_metrics(self) -> list:
        return list(self._from_spec("monitor_metrics") or [])

    @property
    def monitor_artifacts(self) -> list:
        return list(self._from_spec("monitor_artifacts") or [])

    @property
    def monitor_models(self) -> list:
        return list(self._from_spec("monitor_models") or [])

    @property
    def continue_on_fail(self) -> bool:
        return bool(self._from_spec("continue_on_fail", False))


_NODE_FIELDS = tuple(f.name for f in fields(Node))


class DAG:
    """The steps of one pipeline run, in the order they were added.

    Args:
        nodes: steps to add at once; each one's parents must already be known (see `add_deferred`
            for steps that arrive in any order).

    Not thread-safe: the pipeline loop that owns a DAG is its only writer.
    """

    def __init__(self, nodes: Iterable[Node] = ()) -> None:
        self._nodes: dict[str, Node] = {}
        for node in nodes:
            self.add(node)

    # -- building ---------------------------------------------------------------------------

    def add(self, node: Node) -> Node:
        """Add a step whose parents are all steps already; returns the node.

        Args:
            node: the step; its `parents` are de-duplicated in place, order kept.
        """
        self._check_node(node)
        for parent in node.parents:
            if parent not in self._nodes:
                if parent == node.name:
                    raise PipelineError(
                        f"step {node.name!r} names itself as a parent; a step cannot wait for itself"
                    )
                raise PipelineError(
                    f"step {node.name!r} names parent {parent!r}, which is not a step; "
                    f"known steps: {self._known()}. Add the parent step first, or fix the name."
                )
        return self.add_deferred(node)

    def add_deferred(self, node: Node) -> Node:
        """Add a step whose parents may be added later; call `validate()` once all steps are in.

        The controller lets users call `add_step` in any order, so parents are checked at start.
        """
        self._check_node(node)
        node.parents = list(dict.fromkeys(node.parents))
        self._nodes[node.name] = node
        return node

    def validate(self) -> None:
        """Raise PipelineError if a parent is not a step or the steps form a cycle."""
        for node in self._nodes.values():
            for parent in node.parents:
                if parent not in self._nodes:
                    raise PipelineError(
                        f"step {node.name!r} names parent {parent!r}, which is not a step; "
                        f"known steps: {self._known()}. Add the parent step, or fix the name."
                    )
        cycle = self._find_cycle()
        if cycle:
            path = " -> ".join(cycle + [cycle[0]])
            raise PipelineError(
                f"steps {', '.join(repr(n) for n in cycle)} form a cycle ({path}); "
                "a step cannot depend, even indirectly, on its own result"
            )

    def _find_cycle(self) -> list[str]:
        """One cycle as a list of step names, parent before child, or [] if there is none."""
        # Iterative DFS along parent -> child edges with white/grey/black colouring, so deep
        # chains (thousands of steps) do not hit the recursion limit.
        children = self._children_map()
        state = dict.fromkeys(self._nodes, 0)  # 0 unseen, 1 on the current path, 2 finished
        for root in self._nodes:
            if state[root]:
                continue
            path: list[str] = [root]
            stack = [iter(children[root])]
            state[root] = 1
            while stack:
                child = next(stack[-1], None)
                if child is None:
                    state[path.pop()] = 2
                    stack.pop()
                elif state[child] == 1:
                    return path[path.index(child) :]
                elif state[child] == 0:
                    state[child] = 1
                    path.append(child)
                    stack.append(iter(children[child]))
        return []

    # -- reading ----------------------------------------------------------------------------

    def __getitem__(self, name: str) -> Node:
        return self._require(name)

    def __contains__(self, name: object) -> bool:
        return name in self._nodes

    def __iter__(self) -> Iterator[Node]:
        return iter(list(self._nodes.values()))

    def __len__(self) -> int:
        return len(self._nodes)

    def __repr__(self) -> str:
        return f"DAG({len(self)} steps: {self.summary()})"

    def names(self) -> list[str]:
        """Step names in the order they were added."""
        return list(self._nodes)

    def children(self, name: str) -> list[str]:
        """Steps that name `name` as a parent, in the order they were added."""
        self._require(name)
        return [n.name for n in self._nodes.values() if name in n.parents]

    def descendants(self, name: str) -> set[str]:
        """Every step that depends on `name`, directly or through other steps."""
        self._require(name)
        children = self._children_map()
        seen: set[str] = set()
        todo = [name]
        while todo:
            for child in children[todo.pop()]:
                if child not in seen:
                    seen.add(child)
                    todo.append(child)
        seen.discard(name)  # only reachable through a cycle, which validate() reports
        return seen

    def ready(self) -> list[str]:
        """Pending steps whose parents have all succeeded, in the order they were added."""
        nodes = self._nodes
        return [
            n.name
            for n in nodes.values()
            if n.status == "pending" and all(p in nodes and nodes[p].succeeded for p in n.parents)
        ]

    def layers(self) -> list[list[str]]:
        """Steps grouped by depth: roots first, then each step one past its deepest parent.

        Same generations as `networkx.topological_generations`, without importing networkx;
        within a layer, steps keep the order they were added so drawings are stable.
        """
        self.validate()
        depth: dict[str, int] = {}
        # Insertion order is not necessarily topological (add_deferred), so walk Kahn-style.
        waiting = {n.name: len(n.parents) for n in self._nodes.values()}
        children = self._children_map()
        frontier = [name for name, count in waiting.items() if count == 0]
        for name in frontier:
            depth[name] = 0
        while frontier:
            nxt = []
            for name in frontier:
                for child in children[name]:
                    waiting[child] -= 1
                    if waiting[child] == 0:
                        depth[child] = depth[name] + 1
                        nxt.append(child)
            frontier = nxt
        result: list[list[str]] = [[] for _ in range(max(depth.values(), default=-1) + 1)]
        for name in self._nodes:
            result[depth[name]].append(name)
        return result

    def summary(self) -> dict:
        """Counts of steps per status (every status, zeros included) plus "total"."""
        counts = dict.fromkeys(NODE_STATUSES, 0)
        for node in self._nodes.values():
            counts[node.status] += 1
        counts["total"] = len(self._nodes)
        return counts

    # -- advancing --------------------------------------------------------------------------

    def set_status(self, name: str, status: str, **fields: object) -> Node:
        """Set a step's status and any other node fields (task_id=..., started=..., error=...).

        Args:
            name: the step.
            status: one of `NODE_STATUSES`.
            fields: other `Node` attributes to set at the same time.
        """
        node = self[name]
        _check_status(name, status)
        unknown = set(fields) - set(_NODE_FIELDS) | ({"name", "parents", "status"} & set(fields))
        if unknown:
            raise PipelineError(
                f"set_status({name!r}) got {', '.join(sorted(unknown))}; it can set "
                f"{', '.join(f for f in _NODE_FIELDS if f not in ('name', 'parents', 'status'))}"
            )
        node.status = status
        for key, value in fields.items():
            setattr(node, key, value)
        return node

    def skip_subtree(self, name: str, reason: str) -> list[str]:
        """Mark the pending steps that depend on `name` as skipped; returns them in added order.

        Args:
            name: the step that failed (or was aborted); it is not changed itself.
            reason: stored as each skipped step's `error`, e.g. "parent 'train' failed".
        """
        below = self.descendants(name)
        skipped = [n.name for n in self._nodes.values() if n.name in below and n.status == "pending"]
        for step in skipped:
            self._nodes[step].status = "skipped"
            self._nodes[step].error = reason
        return skipped

    # -- serialising ------------------------------------------------------------------------

    def to_dict(self) -> dict:
        """A JSON-safe dict of every node, in added order."""
        return {"version": FORMAT_VERSION, "nodes": [asdict(n) for n in self._nodes.values()]}

    @classmethod
    def from_dict(cls, data: dict) -> DAG:
        """Rebuild a DAG from `to_dict()` output; checks it like `validate()`.

        Unknown node keys are ignored, so an older labpipe can read a newer run's graph.
        """
        version = data.get("version", FORMAT_VERSION)
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise PipelineError(
                f"this pipeline graph has format version {version!r}, newer than this labpipe reads "
                f"({FORMAT_VERSION}); upgrade labpipe"
            )
        dag = cls()
        for raw in data.get("nodes", []):
            dag.add_deferred(Node(**{k: v for k, v in raw.items() if k in _NODE_FIELDS}))
        dag.validate()
        return dag

    def to_json(self) -> str:
        """`to_dict()` as a JSON string; raises PipelineError if a node's `extra` is not JSON-able."""
        try:
            return json.dumps(self.to_dict(), allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise PipelineError(
                f"the pipeline graph cannot be saved as JSON ({exc}); keep Node.extra JSON-able"
            ) from exc

    @classmethod
    def from_json(cls, text: str) -> DAG:
        """Rebuild a DAG from `to_json()` output."""
        return cls.from_dict(json.loads(text))

    # -- internals --------------------------------------------------------------------------

    def _children_map(self) -> dict[str, list[str]]:
        children: dict[str, list[str]] = {name: [] for name in self._nodes}
        for node in self._nodes.values():
            for parent in node.parents:
                if parent in children:
                    children[parent].append(node.name)
        return children

    def _check_node(self, node: Node) -> None:
        if not isinstance(node, Node):
            raise PipelineError(f"a DAG holds Node objects, got {type(node).__name__}: {node!r}")
        if not isinstance(node.name, str) or not node.name:
            raise PipelineError(f"a step needs a non-empty string name, got {node.name!r}")
        if node.name in self._nodes:
            raise PipelineError(f"step {node.name!r} is defined twice; give each step a unique name")
        _check_status(node.name, node.status)
        if node.kind not in NODE_KINDS:
            raise PipelineError(
                f"step {node.name!r} has kind {node.kind!r}; expected one of {', '.join(NODE_KINDS)}"
            )
        if isinstance(node.parents, str):
            # A bare string would otherwise be read as a list of one-letter parents.
            raise PipelineError(
                f"step {node.name!r}: parents must be a list of step names, got the string {node.parents!r}"
            )

    def _require(self, name: str) -> Node:
        try:
            return self._nodes[name]
        except KeyError:
            raise PipelineError(f"no step named {name!r}; known steps: {self._known()}") from None

    def _known(self) -> str:
        names = list(self._nodes)
        if not names:
            return "(none)"
        shown = ", ".join(repr(n) for n in names[:20])
        return shown + (f" and {len(names) - 20} more" if len(names) > 20 else "")


def _check_status(name: str, status: str) -> None:
    if status not in NODE_STATUSES:
        raise PipelineError(
            f"step {name!r} got status {status!r}; expected one of {', '.join(NODE_STATUSES)}"
        )


# ClearML names with no offline meaning raise NotImplementedError saying why (labpipe/offline.py)
install_on(Node, "PipelineController.Node")
