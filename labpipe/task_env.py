"""The environment variable that tells a process which task it is.

A worker sets it in every task's process it starts (agent/child.py): a forked function step, and a
script task's fresh interpreter. `Task.init()` and `Task.current_task()` (task.py) and a pipeline
re-run by a worker (pipeline/) read it to find their task. Its own module, with no imports, so that
the worker's side and the task API's side name one definition without importing each other.
"""

ENV_TASK_ID = "LABPIPE_TASK_ID"
