"""One pipeline run: the DAG, the step launcher, the cache, the failure policy. Shared by
`PipelineDecorator` and `PipelineController` (they differ only in how steps are declared).

The pipeline logic runs in the caller's thread and only *declares* steps (`add`); a scheduler
thread advances the DAG (`_advance`, the one loop to read): it launches every step whose parents
succeeded (or reuses a cached task), polls the running steps' tasks in one query, applies retries
and the failure policy, and wakes whoever waits for a result.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from .. import progress
from .. import status as _status
from ..errors import ArtifactError, BlobCorrupted, LabpipeError, PipelineError, StepFailed
from ..store import leases, pipelines, tasks, wakeup
from ..task import Task
from . import failure
from .cache import Refresh, RunCache
from .dag import DAG, Node
from .launch import Cached, LaunchContext, Outcome, Queued, Running, Skipped, launch
from .monitor import copy_monitored
from .proxy import StepResult, is_result
from .resolver import make_resolver
from .step import StepSpec

log = logging.getLogger("labpipe")

_REAP_EVERY = 1.0
_OWN_CHECK_EVERY = 0.25  # how often a run looks whether its own task was stopped from outside


class PipelineRun:
    """The live state of one pipeline run, owned by its controller process.

    task: the pipeline's own task (type controller). default_queue: where steps go unless told.
    pool: a callable(queue) that makes sure someone serves that queue (None: nobody starts workers).
    refresh: which cached steps re-run (a `cache.Refresh`, or True for all, or a set of step names).
    quiet, stream_output: what the run shows of its progress (labpipe.progress.settings).
    """

    def __init__(
        self,
        task: Task,
        *,
        default_queue: str = "default",
        abort_on_failure: bool = False,
        add_pipeline_tags: bool = False,
        target_project: str | None = None,
        retry_on_failure: int | Callable | None = None,
        pool_frequency: float = 0.0,
        pool: Callable[[str], None] | None = None,
        refresh: Refresh | bool | set[str] = False,
        step_task_created_callback: Callable | None = None,
        step_task_completed_callback: Callable | None = None,
        owner: Any = None,
        quiet: bool = False,
        stream_output: bool | None = None,
    ):
        self.task = task
        self.db = task.db
        self.default_queue = default_queue
        self.abort_on_failure = abort_on_failure
        self.add_pipeline_tags = add_pipeline_tags
        self.target_project = target_project
        self.retry_on_failure = retry_on_failure
        self.pool_frequency = pool_frequency
        self.pool = pool
        self.step_task_created_callback = step_task_created_callback
        self.step_task_completed_callback = step_task_completed_callback
        self.owner = owner if owner is not None else self  # what callbacks receive as `pipeline`
        self.dag = DAG()
        self.specs: dict[str, StepSpec] = {}
        self.errors: list[str] = []
        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)
        self._active: dict[str, str] = {}
        self._retries: dict[str, int] = {}
        self._names: dict[str, int] = {}
        self._dirty: set[str] = set()
        self._served: set[str] = set()
        self._closing = False
        self._stopped = False
        self._thread: threading.Thread | None = None
        self._wake_w: int | None = None
        self._asleep = True  # the scheduler waits for a nudge (or has not started)
        self._awaited: Counter[str] = Counter()  # nodes that callers wait for (wait_node), and how many callers
        # Readiness is tracked, not rescanned: each node's unfinished parents, and the pending nodes
        # whose parents have all finished (in declaration order).
        self._waiting_on: dict[str, set[str]] = {}
        self._children: dict[str, list[str]] = {}
        self._candidates: dict[str, None] = {}
        self.cache = RunCache(self.db, refresh if isinstance(refresh, Refresh) else Refresh(refresh))
        self._context: LaunchContext | None = None
        self._last_persist = 0.0
        self._reported: dict[str, str] = {}  # node -> status last told to its status_change_callback
        self._causes: dict[str, str] = {}  # failed node -> its root cause (failure.root_cause), shown first
        self._skipped_by: dict[str, str] = {}  # skipped node -> the failed step that made it so
        self._thread_error: BaseException | None = None
        self._last_reap = 0.0
        self._last_own_check = 0.0
        self.started = time.time()
        self.params: dict[str, Any] = {}  # pipeline parameters, for ${pipeline.x} references
        self.local_imports = True  # steps get the pipeline script's folder on sys.path
        self.local_queue: str | None = None  # set: every step goes to this process-private queue
        self.progress = progress.open_run(self.db, task.id, task.name, quiet=quiet, stream_output=stream_output)

    # -- declaring steps (caller's thread) -----------------------------------------------

    def unique_name(self, base: str) -> str:
        """ClearML's naming of repeated calls: name, name_1, name_2, ..."""
        with self._lock:
            n = self._names.get(base, 0)
            self._names[base] = n + 1
            name = base if n == 0 else f"{base}_{n}"
            while name in self.dag:  # an explicit step already took it
                n += 1
                self._names[base] = n + 1
                name = f"{base}_{n}"
            return name

    def add(self, spec: StepSpec, *, deferred: bool = False) -> Node:
        """Declare a step; it launches as soon as its parents succeeded (after `start()`)."""
        with self._cond:
            if self._closing and self._thread is not None and not self._thread.is_alive():
                raise PipelineError(f"pipeline {self.task.id} has finished; step {spec.name!r} cannot be added")
            parents = list(dict.fromkeys([*spec.parents, *_result_parents(spec.kwargs)]))
            spec.parents = parents
            node = Node(name=spec.name, parents=parents, kind=spec.kind, queue=spec.options.execution_queue or self.default_queue,
                        stage=spec.options.stage)
            (self.dag.add_deferred if deferred else self.dag.add)(node)
            node.attach(spec)
            self.specs[spec.name] = spec
            waiting = {p for p in parents if p in self.dag and not self.dag[p].done}
            for p in parents:
                self._children.setdefault(p, []).append(spec.name)
            self._waiting_on[spec.name] = waiting
            if self._stopped:  # declared after the run was stopped: it will never run
                self._set(spec.name, "skipped", error="pipeline stopped")
                self._cond.notify_all()
            elif not waiting:
                self._candidates[spec.name] = None
            self._dirty.add(spec.name)
            self._nudge()
            self.progress.step(spec.name, node.status)
            return node

    def results(self, name: str, return_values: tuple[str, ...]) -> StepResult | tuple[StepResult, ...] | None:
        """What a component call returns: one proxy, a tuple of proxies, or None for no return values."""
        proxies = tuple(StepResult(self, name, rv) for rv in return_values)
        if not proxies:
            return None
        return proxies[0] if len(proxies) == 1 else proxies

    # -- the scheduler --------------------------------------------------------------------

    def start(self) -> None:
        """Start the scheduler thread (idempotent)."""
        with self._lock:
            if self._thread is not None:
                return
            # Workers poke this channel when one of our steps ends; add()/close()/stop() write to the
            # self-pipe. Between the two the scheduler sleeps instead of polling the store.
            self._listener = wakeup.Listener(self.db.root, [wakeup.pipeline_channel(self.task.id)])
            self._wake_r, self._wake_w = os.pipe()
            os.set_blocking(self._wake_r, False)
            os.set_blocking(self._wake_w, False)
            self._thread = threading.Thread(target=self._loop, name=f"labpipe-pipeline-{self.task.id[:8]}", daemon=True)
            self._thread.start()

    def _nudge(self) -> None:
        """Wake the scheduler now (a step was declared, or the run is closing). Called with the lock
        held, it writes only when the scheduler is asleep or about to be (it looks again anyway
        before it sleeps): a step declared while it works costs no system call."""
        if self._wake_w is not None and self._asleep:
            try:
                os.write(self._wake_w, b"\0")
            except (BlockingIOError, OSError):
                pass

    def _loop(self) -> None:
        try:
            while True:
                with self._cond:
                    self._asleep = False
                    changed = self._advance()
                    if changed and any(self.dag[n].done for n in self._awaited):
                        self._cond.notify_all()  # only for a node someone waits for: no thread woken in vain
                    if self._closing and not self._active and not self._candidates and all(n.done for n in self.dag):
                        return
                    timeout = 0.0 if changed else self._idle_timeout()
                    self._asleep = bool(timeout)  # set under the lock: a step declared from now on nudges
                if timeout:
                    fds = [*self._listener.fds, self._wake_r]
                    if wakeup.readable(fds, timeout):
                        self._listener.drain()
                        _drain(self._wake_r)
        except BaseException as exc:  # never die silently: waiters get this error
            log.exception("pipeline %s: scheduler crashed", self.task.id)
            with self._cond:
                self._thread_error = exc
                self._cond.notify_all()
        finally:
            self._persist()
            self.progress.steps_done()
            self._listener.close()
            try:  # one channel per run: remove it, or the store's wake/ folder grows with every run
                os.unlink(wakeup.fifo_path(self.db.root, wakeup.pipeline_channel(self.task.id)))
            except OSError:
                pass
            for fd in (self._wake_r, self._wake_w):
                os.close(fd)
            self._wake_w = None

    def _idle_timeout(self) -> float:
        """How long to sleep when nothing changed: a wake-up normally comes first; this is the fallback
        (running steps' start times, time limits, tasks ended by other means, dead workers)."""
        if not self._active:
            return max(self.pool_frequency, 0.25)
        if any(self.specs[n].options.time_limit for n in self._active):
            return 0.05
        return 0.1

    def _advance(self) -> bool:
        """One pass over the DAG: launch what is ready, collect what finished. True if anything changed."""
        changed = False
        if not self._stopped and time.monotonic() - self._last_own_check > _OWN_CHECK_EVERY:
            changed = self._check_own_task()
        if not self._stopped:
            for name in self._ready():
                if name in self._candidates:  # (a launch just before may have sent it back to wait)
                    self._launch(name)
                changed = True
        if self._active:
            rows = pipelines.task_statuses(self.db, list(self._active.values()))
            for name, task_id in list(self._active.items()):
                row = rows.get(task_id)
                node = self.dag[name]
                status = row["status"] if row is not None else _status.FAILED
                if status == _status.IN_PROGRESS and node.status == "queued":
                    self._set(name, "running", started=row["started"])
                    self._status_changed(name)
                    changed = True
                elif status in _status.SUCCEEDED:
                    del self._active[name]
                    self._succeeded(name, row)
                    changed = True
                elif status in (_status.FAILED, _status.STOPPED) or (status == _status.CREATED and node.status != "pending"):
                    del self._active[name]
                    message = row["status_message"] if row is not None else "its task was deleted"
                    self._failed(name, status if status != _status.CREATED else _status.STOPPED, message or "")
                    changed = True
                elif status == _status.IN_PROGRESS:
                    spec = self.specs[name]
                    if spec.options.time_limit and node.started and time.time() - node.started > spec.options.time_limit:
                        try:  # unless it ended meanwhile: a forced stop would overwrite that ending
                            tasks.set_status(self.db, task_id, _status.STOPPED, f"time limit of {spec.options.time_limit} s exceeded")
                        except LabpipeError:  # IllegalTransition: the next look sees how it ended
                            pass
            now = time.monotonic()
            if now - self._last_reap > _REAP_EVERY:
                self._last_reap = now
                leases.reap_expired(self.db)
        # Node states are for people (progress, `labpipe pipelines`, plots): written in batches, and
        # at once when nothing runs.
        if self._dirty and time.monotonic() - self._last_persist > 0.1:
            self._persist()
        return changed

    def _check_own_task(self) -> bool:
        """A run stopped from outside (`labpipe stop`, `Task.mark_stopped`, a clone's owner) stops its
        running steps and skips the rest, as ClearML's controller does when its task is aborted."""
        self._last_own_check = time.monotonic()
        row = pipelines.task_statuses(self.db, [self.task.id]).get(self.task.id)
        if row is None or row["status"] != _status.STOPPED:
            return False
        self._abort_all(f"pipeline stopped: {row['status_message'] or 'stopped'}")
        self._cond.notify_all()
        return True

    def _ready(self) -> list[str]:
        """Pending nodes whose parents all succeeded. A pending node under a parent that ended badly
        (skipped, or failed with its children to be skipped) is skipped here: it may have been
        declared after that parent ended."""
        out = []
        for name in list(self._candidates):
            node = self.dag[name]
            if node.status != "pending":  # skipped along a subtree
                del self._candidates[name]
                continue
            blocked = [p for p in node.parents if self.dag[p].done and not self._parent_ok(p)]
            if blocked:
                self._skipped_by[node.name] = self._skipped_by.get(blocked[0], blocked[0])
                self._set(node.name, "skipped", error=f"parent step {blocked[0]!r} {self.dag[blocked[0]].status}")
                self._status_changed(node.name)
                self._cond.notify_all()
            elif all(self._parent_ok(p) for p in node.parents):
                out.append(node.name)
        return out

    def _parent_ok(self, parent: str) -> bool:
        node = self.dag[parent]
        if node.succeeded:
            return True
        if node.status in ("failed", "aborted"):
            b = self.specs[parent].behaviour()
            return not b["skip_children_on_fail" if node.status == "failed" else "skip_children_on_abort"]
        return False

    # -- launching ------------------------------------------------------------------------

    def _launch(self, name: str) -> None:
        spec, node = self.specs[name], self.dag[name]
        try:
            outcome = launch(spec, node, self._launch_context())
        except LabpipeError as exc:
            self._set(name, "failed", error=str(exc), completed=time.time())
            self._apply_policy(name, "failed", str(exc))
            return
        except Exception as exc:  # a user callback or argument raised: the step fails, the run goes on
            text = f"{type(exc).__name__}: {exc}"
            self._set(name, "failed", error=f"step {name!r} could not be launched: {text}", completed=time.time())
            self._apply_policy(name, "failed", text)
            return
        self._apply_launch(name, outcome)

    def _launch_context(self) -> LaunchContext:
        """What launches read of this run; made at the first launch (the parameters are set by then)."""
        if self._context is None:
            self._context = LaunchContext(
                db=self.db, pipeline_id=self.task.id, project=self.target_project or self.task.project,
                default_queue=self.default_queue, dag=self.dag, cache=self.cache,
                resolve=make_resolver(self.task.id, self.params, self.dag), owner=self.owner,
                callbacks=(self.step_task_created_callback,) if self.step_task_created_callback else (),
                local_queue=self.local_queue, local_imports=self.local_imports,
                pipeline_tag=f"pipe: {self.task.id}" if self.add_pipeline_tags else None,
            )
        return self._context

    def _apply_launch(self, name: str, outcome: Outcome) -> None:
        """Apply what a launch did to the DAG, tell who listens, and track a step that now runs."""
        now = time.time()
        if isinstance(outcome, Queued):
            if self.pool is not None and outcome.queue not in self._served:
                self.pool(outcome.queue)
                self._served.add(outcome.queue)
            self._set(name, "queued", task_id=outcome.task_id, queue=outcome.queue)
            self._active[name] = outcome.task_id
            self._status_changed(name)
        elif isinstance(outcome, Cached):
            hit = outcome.hit
            self._set(name, "cached", task_id=hit.task_id, started=hit.started, completed=hit.completed)
            self._after_success(name)
        elif isinstance(outcome, Running):
            self._set(name, "running", task_id=outcome.task_id, started=outcome.started)
            self._active[name] = outcome.task_id
            self._status_changed(name)
        elif isinstance(outcome, Skipped):
            self._set(name, "skipped", task_id=outcome.task_id, error=outcome.reason, completed=now)
            self._status_changed(name)
            if outcome.subtree:
                for child in self.dag.skip_subtree(name, f"parent {name!r} was skipped"):
                    self._dirty.add(child)
                    self._status_changed(child)
        else:  # Waiting: it stays pending until the parents it reads from ran again
            for parent in outcome.reopen:
                self._reopen(parent)

    def _reopen(self, name: str) -> None:
        """Run a cached step again (its outputs were found corrupt): it goes back to pending, ignores the
        cache, and its children that have not started wait for it again."""
        log.warning("pipeline %s: the cached outputs of step %r are corrupt (quarantined); running it again", self.task.id, name)
        self.cache.recompute(name)
        self.dag.set_status(name, "pending", task_id=None, started=None, completed=None, error=None)
        self._dirty.add(name)
        self._candidates[name] = None  # its parents have all succeeded: it was cached
        for child in self._children.get(name, ()):
            if self.dag[child].status == "pending":
                self._waiting_on[child].add(name)
                self._candidates.pop(child, None)
        self._status_changed(name)
        self._nudge()

    # -- outcomes -------------------------------------------------------------------------

    def _succeeded(self, name: str, row) -> None:
        self._set(name, "completed", started=row["started"] or self.dag[name].started, completed=row["completed"] or time.time())
        self._after_success(name)

    def _after_success(self, name: str) -> None:
        spec, node = self.specs[name], self.dag[name]
        self._monitor(spec, node)
        for cb in (spec.options.post_execute_callback, self.step_task_completed_callback):
            if cb is not None:
                try:
                    cb(self.owner, node)
                except Exception:
                    log.exception("pipeline %s: post-execute callback of step %r raised", self.task.id, name)
        self._status_changed(name)

    def _failed(self, name: str, task_status: str, message: str) -> None:
        spec, node = self.specs[name], self.dag[name]
        if task_status == _status.FAILED and not self._stopped and self._retry(spec, node):
            return
        node_status = "failed" if task_status == _status.FAILED else "aborted"
        self._set(name, node_status, error=message or task_status, completed=time.time())
        error = None
        if task_status == _status.FAILED and node.task_id:
            try:  # what the worker recorded of the exception (read once, on failure only)
                error = tasks.get_task(self.db, node.task_id).runtime.get("error")
            except LabpipeError:
                error = None
        self._causes[name] = failure.root_cause(name, node.task_id, error, message or task_status)
        self._emit(name)  # before the steps it makes skipped
        self._apply_policy(name, node_status, message)

    def _retry(self, spec: StepSpec, node: Node) -> bool:
        policy = spec.options.retry_on_failure if spec.options.retry_on_failure is not None else self.retry_on_failure
        done = self._retries.get(node.name, 0)
        again = bool(policy(self.owner, node, done)) if callable(policy) else done < int(policy or 0)
        if not again:
            return False
        self._retries[node.name] = done + 1
        log.info("pipeline %s: retrying step %r (retry %d)", self.task.id, node.name, done + 1)
        Task.enqueue(node.task_id, queue_name=node.queue)
        self._set(node.name, "queued")
        self._active[node.name] = node.task_id
        self._status_changed(node.name)
        return True

    def _apply_policy(self, name: str, node_status: str, message: str) -> None:
        behaviour = self.specs[name].behaviour()
        kind = "fail" if node_status == "failed" else "abort"
        first_line = (message or "").strip().splitlines()[0] if (message or "").strip() else ""
        if behaviour[f"skip_children_on_{kind}"]:
            reason = f"parent step {name!r} {node_status}" + (f": {first_line}" if first_line else "")
            for child in self.dag.skip_subtree(name, reason):
                self._skipped_by[child] = name
                self._dirty.add(child)
                self._status_changed(child)
        if not behaviour[f"continue_on_{kind}"]:
            node = self.dag[name]
            cause = self._causes.get(name)
            self.errors.append(cause if cause and node_status == "failed"
                               else f"step {name!r} (task {node.task_id}) {node_status}: {message}".rstrip(": "))
            if self.abort_on_failure:
                self._abort_all(f"pipeline aborted: step {name!r} {node_status}")
        self._status_changed(name)

    def _abort_all(self, reason: str) -> None:
        """Stop every running step and skip everything not started (abort_on_failure, stop(), Ctrl-C)."""
        self._stopped = True
        for name, task_id in list(self._active.items()):
            try:
                tasks.set_status(self.db, task_id, _status.STOPPED, reason)
            except LabpipeError:  # IllegalTransition: it ended meanwhile, and keeps how it ended
                pass
            del self._active[name]
            self._set(name, "aborted", error=reason, completed=time.time())
            self._emit(name)
        for node in self.dag:
            if node.status == "pending":
                self._set(node.name, "skipped", error=reason)
                self._status_changed(node.name)

    def _monitor(self, spec: StepSpec, node: Node) -> None:
        if node.task_id is not None:
            copy_monitored(self.db, spec, node.task_id, self.task.id)

    # -- node bookkeeping -----------------------------------------------------------------

    def _set(self, name: str, status: str, **fields: Any) -> None:
        was_done = self.dag[name].done
        self.dag.set_status(name, status, **fields)
        node = self.dag[name]
        if node.task_id and (node.job is None or node.job.task_id() != node.task_id):
            node.attach(self.specs[name], StepJob(node.task_id))
        self._dirty.add(name)
        if status != "pending":
            self._candidates.pop(name, None)
        if not was_done and self.dag[name].done:
            for child in self._children.get(name, ()):
                waiting = self._waiting_on[child]
                waiting.discard(name)
                if not waiting and self.dag[child].status == "pending":
                    self._candidates[child] = None

    def _status_changed(self, name: str) -> None:
        """Call the step's status_change_callback(pipeline, node, previous_status), as ClearML does."""
        cb = self.specs[name].options.status_change_callback
        previous = self._reported.get(name, "pending")
        self._reported[name] = self.dag[name].status
        if previous != self.dag[name].status:
            self._emit(name)
        if cb is not None and previous != self.dag[name].status:
            try:
                cb(self.owner, self.dag[name], previous)
            except Exception:
                log.exception("pipeline %s: status_change_callback of step %r raised", self.task.id, name)

    def _emit(self, name: str) -> None:
        """Tell the progress view a step changed state (one append; drawn on the view's own thread)."""
        n = self.dag[name]
        self.progress.step(name, n.status, n.task_id, n.started, n.completed, self._causes.get(name) or n.error)

    def _persist(self) -> None:
        with self._lock:
            if not self._dirty:
                return
            names, self._dirty = self._dirty, set()
            self._last_persist = time.monotonic()
            order = {n: i for i, n in enumerate(self.dag.names())}
            nodes = []
            for name in names:
                n = self.dag[name]
                nodes.append({"name": n.name, "seq": order[n.name], "parents": n.parents, "task": n.task_id, "status": n.status,
                              "kind": n.kind, "queue": n.queue, "started": n.started, "completed": n.completed,
                              "error": n.error, "stage": n.stage, "extra": n.extra})
        pipelines.save_nodes(self.db, self.task.id, nodes)

    # -- results (caller's thread) ---------------------------------------------------------

    def wait_node(self, name: str, timeout: float | None = None) -> Node:
        """Block until node `name` is done; raises if the scheduler died."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            self.start()
            self._awaited[name] += 1
            try:
                while not self.dag[name].done:
                    if self._thread_error is not None:
                        raise PipelineError(f"pipeline {self.task.id}: its scheduler failed: {self._thread_error!r}")
                    if deadline is not None and time.monotonic() > deadline:
                        raise TimeoutError(f"step {name!r} did not finish within {timeout} s")
                    self._cond.wait(0.1)
            finally:
                self._awaited[name] -= 1
                if not self._awaited[name]:
                    del self._awaited[name]
            return self.dag[name]

    def result_value(self, name: str, artifact: str) -> Any:
        """The object a step returned under `artifact` (waits for the step)."""
        node = self.wait_node(name)
        if not node.succeeded:
            which = f"step {name!r}" + (f" (task {node.task_id})" if node.task_id else "")
            if node.status == "skipped":  # never ran: there is no value to use; say what made it so first
                root = self._skipped_by.get(name)
                cause = self._causes.get(root) if root else None
                if cause:
                    raise StepFailed(f"{cause}\n{which} was skipped because of it, so its return value {artifact!r} does not exist")
                raise StepFailed(f"{which} was skipped ({node.error or 'no reason recorded'}), so its return value "
                                 f"{artifact!r} does not exist; check that it ran before using it in the pipeline logic")
            raise StepFailed(self._causes.get(name) or f"{which} {node.status}: {node.error or 'no message'}")
        task_id = node.task_id
        try:
            return Task.get_task(task_id=task_id).artifacts[artifact].get()
        except KeyError:
            raise ArtifactError(f"step {name!r} (task {task_id}) has no return value {artifact!r}") from None
        except BlobCorrupted:
            # Reused from the cache, and its bytes were damaged (now quarantined): run the step again,
            # unless the scheduler already did (it verifies cached inputs of a step it launches).
            with self._cond:
                now = self.dag[name]
                if now.task_id == task_id:
                    if now.status != "cached":
                        raise  # freshly computed by this run: a real error
                    self._reopen(name)
            if threading.current_thread() is self._thread:
                raise  # the scheduler (resolving a nested proxy) must not wait for itself; it retries later
            return self.result_value(name, artifact)

    def result_hash(self, name: str, artifact: str) -> str:
        """The content hash of a finished step's artifact (read once per step, then remembered)."""
        return self.cache.result_hash(name, self.dag[name].task_id, artifact)

    def close(self, timeout: float | None = None) -> bool:
        """Let every declared step finish; returns True if the run succeeded (no disallowed failure)."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self.start()
        self._nudge()
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise TimeoutError(f"pipeline {self.task.id} did not finish within {timeout} s")
        if self._thread_error is not None:
            raise PipelineError(f"pipeline {self.task.id}: its scheduler failed: {self._thread_error!r}")
        self.cache.refresh.warn_unknown(self.dag.names(), self.task.id)
        return not self.errors

    def stop(self, reason: str = "pipeline stopped") -> None:
        """Abort running steps, skip the rest, and end the scheduler."""
        with self._cond:
            self._abort_all(reason)
            self._closing = True
            self._cond.notify_all()
            self._nudge()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(10)
        self._persist()

    # -- ClearML's pipeline-object methods (what get_current_pipeline() users call) -------

    @property
    def id(self) -> str:
        return self.task.id

    def get_logger(self):
        return self.task.get_logger()

    def upload_artifact(self, name: str, artifact_object: Any, **kwargs: Any) -> bool:
        return self.task.upload_artifact(name, artifact_object, **kwargs)

    def elapsed(self) -> float:
        return time.time() - self.started

    def get_pipeline_dag(self) -> dict[str, Node]:
        with self._lock:
            return {n.name: n for n in self.dag}

    def get_running_nodes(self) -> list[str]:
        with self._lock:
            return [n.name for n in self.dag if n.status in ("queued", "running")]

    def get_processed_nodes(self) -> list[str]:
        with self._lock:
            return [n.name for n in self.dag if n.done]


def _result_parents(kwargs: dict) -> list[str]:
    """Names of the steps whose results appear among the arguments (top level and one container deep)."""
    out = []
    for value in kwargs.values():
        if is_result(value):
            out.append(value.step_name)
        elif isinstance(value, (list, tuple, set)):
            out += [v.step_name for v in value if is_result(v)]
        elif isinstance(value, dict):
            out += [v.step_name for v in value.values() if is_result(v)]
    return out


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 4096):
            pass
    except (BlockingIOError, OSError):
        pass


class StepJob:
    """ClearML's `node.job`: the launched step's task (`job.task`, loaded when asked) and `job.task_id()`."""

    def __init__(self, task_id: str):
        self._task_id = task_id

    def task_id(self) -> str:
        return self._task_id

    @property
    def task(self) -> Task:
        return Task.get_task(task_id=self._task_id)

    def is_stopped(self) -> bool:
        return self.task.get_status() in ("completed", "failed", "stopped", "published")

    def __repr__(self) -> str:
        return f"<StepJob {self._task_id}>"
