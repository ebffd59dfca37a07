"""A pipeline step written as a plain script: the template behind `Task.create(script=...)`.

Used by examples/pipeline_from_tasks.py. A worker runs it in a fresh interpreter with the task's
`Args/` parameters on the command line (`--evaluate_task_id ID --C 0.5 ...`), as a ClearML agent
would; `Task.init()` then returns the task being run, so the report is stored on it.
"""

import argparse

from labpipe import Task

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--evaluate_task_id", default="", help="the evaluation step's task id")
parser.add_argument("--C", type=float, default=None, help="the regularisation the model was trained with")
parser.add_argument("--title", default="model report")
args = parser.parse_args()

task = Task.init(project_name="examples", task_name="report", task_type="qc")
if not args.evaluate_task_id:
    raise SystemExit("report_step.py: pass --evaluate_task_id (the pipeline sets it to ${evaluate.id})")

evaluation = Task.get_task(task_id=args.evaluate_task_id)
lines = [f"# {args.title}", "", f"evaluation task: {evaluation.id}", f"C: {args.C}"]
for title, series in sorted(evaluation.get_last_scalar_metrics().items()):
    for name, value in sorted(series.items()):
        lines.append(f"{title}/{name}: {value['last']:.4f}")
report = "\n".join(lines) + "\n"
print(report)
task.upload_artifact("report", report)
