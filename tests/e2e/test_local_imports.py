"""Local imports: a component may import a module that sits beside the pipeline script (ClearML users
hit failures here in local mode); with enable_local_imports=False it cannot."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

from labpipe import Task

SCRIPT = textwrap.dedent("""
    import sys
    from labpipe import PipelineDecorator

    @PipelineDecorator.component(return_values=["value"])
    def use_helper(x: int):
        import mylocalhelper
        return mylocalhelper.triple(x)

    @PipelineDecorator.pipeline(name="local-imports", project="e2e", version="1", enable_local_imports=LOCAL)
    def main(x=2):
        return int(use_helper(x))

    if __name__ == "__main__":
        PipelineDecorator.run_locally(workers=1)
        print("value", main())
""")


def _run(tmp_path, local: bool):
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "mylocalhelper.py").write_text("def triple(x):\n    return 3 * x\n")
    script = folder / "pipe.py"
    script.write_text(SCRIPT.replace("LOCAL", str(local)))
    # run from elsewhere: the script's folder is not the working directory
    return subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=dict(os.environ), capture_output=True, text=True, timeout=120)


def test_component_imports_a_module_beside_the_pipeline_script(tmp_path, store):
    proc = _run(tmp_path, True)
    assert proc.returncode == 0, proc.stderr
    assert "value 6" in proc.stdout


def test_without_local_imports_the_component_cannot_see_the_module(tmp_path, store):
    proc = _run(tmp_path, False)
    assert proc.returncode != 0
    step = Task.get_tasks(project_name="e2e", task_filter={"type": ["training"]})[0]
    assert step.get_status() == "failed" and "mylocalhelper" in step.get_status_message()
    assert "enable_local_imports=False" in step.get_status_message()  # says why, not "install it"


SUBPACKAGE_SCRIPT = textwrap.dedent("""
    from labpipe import PipelineDecorator
    from comps.steps import use_helper

    @PipelineDecorator.pipeline(name="local-imports-subpackage", project="e2e", version="1")
    def main(x=2):
        return int(use_helper(x))

    if __name__ == "__main__":
        PipelineDecorator.run_locally(workers=1)
        print("value", main())
""")


def test_component_in_a_subpackage_imports_a_module_beside_the_script_from_a_fresh_worker(tmp_path, store):
    # A fresh interpreter does not inherit the script's sys.path[0] as a forked worker does: the step
    # task itself names the script's folder (function_task.local_import_folders).
    folder = tmp_path / "project"
    (folder / "comps").mkdir(parents=True)
    (folder / "comps" / "__init__.py").write_text("")
    (folder / "comps" / "steps.py").write_text(
        "from labpipe import PipelineDecorator\n\n\n@PipelineDecorator.component(return_values=['value'])\n"
        "def use_helper(x: int):\n    import mylocalhelper\n    return mylocalhelper.triple(x)\n"
    )
    (folder / "mylocalhelper.py").write_text("def triple(x):\n    return 3 * x\n")
    (folder / "pipe.py").write_text(SUBPACKAGE_SCRIPT)
    env = dict(os.environ, LABPIPE_WORKER_START="fresh")
    proc = subprocess.run([sys.executable, str(folder / "pipe.py")], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "value 6" in proc.stdout
