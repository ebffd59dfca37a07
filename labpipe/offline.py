"""ClearML names with no offline meaning: each answers NotImplementedError saying why, and what to use.

labpipe promises that a ClearML script ports by changing its imports, so no ClearML name may give
AttributeError. Names that need a ClearML server (credentials, the web UI, server-side projects,
queues of remote agents), cloud storage, Docker, or a feature labpipe does not have are listed here
as data, with the reason, instead of as stub methods in the core classes. `install_on(cls, owner)` (called by
each covered class's module) puts one raising attribute on the class for each entry, unless the class
already has a real one (a real implementation always wins; tests/test_clearml_surface.py fails on
an entry that is no longer needed).

Methods raise when called (so `hasattr` and `getattr` answer); names ClearML reads as attributes or
properties (in `READ_AS_ATTRIBUTE`) raise when read on an instance. Both are non-data descriptors:
a value set on an instance (a Node's `draft = True`) is kept and read back.
"""

from __future__ import annotations

from typing import Any

SERVER = "it needs a ClearML server, and labpipe keeps everything in its local store"
WEB_UI = "there is no web UI: labpipe shows results with `labpipe show`, `labpipe scalars` and `labpipe plots`"
CLOUD = "there is no object store offline: artifacts and models go into labpipe's store (LABPIPE_STORE)"
DOCKER = "labpipe runs steps in the local Python environment, never in a container"
OFFLINE_MODE = ("ClearML's offline mode records a session to import into a server later; labpipe is always "
                "local and writes to its store as it goes, so there is nothing to export or import")
SERVER_PROJECT = "labpipe's projects are plain names on tasks, not server-side objects: use get_project_name()"
ENDPOINTS = "external endpoints are routed by a ClearML server's router; labpipe serves nothing over the network"
TASK_MODEL_DESIGN = ("labpipe keeps a model's design and labels on the model: use OutputModel(task, config_dict=, "
                     "label_enumeration=) and Model(id).config_dict / .labels")
MODEL_REPORTS = ("labpipe records metrics and plots on tasks, not on models: report through the model's task, "
                 "Task.get_task(model.task).get_logger()")
MODEL_LIFECYCLE = ("labpipe keeps a model as long as its task: archive or delete the task "
                   "(Task.get_task(model.task).archive() / .delete())")
UPLOAD_DESTINATION = "models are stored in labpipe's store when update_weights() is called; there is no upload destination"
DATASET_FIXED = ("a labpipe dataset's name, project and description are fixed at Dataset.create: "
                 "create a new version (Dataset.create(..., parent_datasets=[ds.id])) instead")
ON_RUNNING_PIPELINE = ("a method of the running pipeline, not of the decorator class: inside the pipeline function "
                       "call it on PipelineDecorator.get_current_pipeline()")
BUILT_BY_DECORATORS = ("a decorated pipeline is built from its @PipelineDecorator.component calls and run by calling the "
                       "@PipelineDecorator.pipeline function; for steps added one by one, use PipelineController")

#: {labpipe class: {ClearML name: why it has no offline meaning, and what to use}}
NO_OFFLINE_MEANING: dict[str, dict[str, str]] = {
    "Task": {
        "cache_dir": "ClearML's per-task download cache; labpipe's cache is <store>/cache, shared by all tasks",
        "debug_simulate_remote_task": "it fakes a ClearML agent run; run the task under `labpipe agent` (or Task.enqueue) instead",
        "default_session": SERVER,
        "session": SERVER,
        "send": SERVER,
        "get_all": "it sends a raw query to the ClearML server; use Task.get_tasks(...) or Task.query_tasks(...)",
        "get_base_docker": DOCKER,
        "set_base_docker": DOCKER,
        "get_debug_samples": "labpipe does not keep debug samples: images reported with Logger.report_image are in Logger.get_plots()",
        "get_http_router": ENDPOINTS,
        "request_external_endpoint": ENDPOINTS,
        "list_external_endpoints": ENDPOINTS,
        "wait_for_external_endpoint": ENDPOINTS,
        "launch_multi_node": "multi-node runs need several machines with ClearML agents; labpipe runs on one machine",
        "get_model_config_dict": TASK_MODEL_DESIGN,
        "get_model_config_text": TASK_MODEL_DESIGN,
        "get_model_design": TASK_MODEL_DESIGN,
        "set_model_config": TASK_MODEL_DESIGN,
        "update_model_desc": TASK_MODEL_DESIGN,
        "save_exec_model_design_file": TASK_MODEL_DESIGN,
        "connect_label_enumeration": TASK_MODEL_DESIGN,
        "set_model_label_enumeration": TASK_MODEL_DESIGN,
        "get_labels_enumeration": TASK_MODEL_DESIGN,
        "get_label_num_description": TASK_MODEL_DESIGN,
        "get_num_of_classes": TASK_MODEL_DESIGN,
        "labels_stats": TASK_MODEL_DESIGN,
        "update_output_model": "use OutputModel(task=task, name=...).update_weights(path)",
        "set_input_model": "use task.connect(InputModel(model_id=...))",
        "remove_input_models": "labpipe does not remove a task's input models; clone the task and connect the ones it needs",
        "get_offline_mode_folder": OFFLINE_MODE,
        "import_offline_session": OFFLINE_MODE,
        "set_offline": OFFLINE_MODE,
        "get_output_destination": CLOUD,
        "output_uri": CLOUD,
        "storage_uri": CLOUD,
        "setup_upload": CLOUD,
        "setup_aws_upload": CLOUD,
        "setup_azure_upload": CLOUD,
        "setup_gcp_upload": CLOUD,
        "set_credentials": "there are no server credentials: labpipe needs only its store folder (LABPIPE_STORE)",
        "get_output_log_web_page": WEB_UI,
        "get_task_output_log_web_page": WEB_UI,
        "get_project_id": SERVER_PROJECT,
        "get_project_object": SERVER_PROJECT,
        "get_projects": "labpipe's projects are plain names on tasks, not server-side objects: "
                        "use {t.get_project_name() for t in Task.get_tasks()}",
        "export_task": "it exports the server's JSON form of a task; use Task.clone to copy a task within the store",
        "import_task": "it imports the server's JSON form of a task; use Task.create or Task.clone",
        "update_task": "it writes the server's JSON form of a task; use set_parameters, set_configuration_object, set_comment, ...",
        "get_random_seed": "labpipe's Task.init does not seed random generators: seed them in your script",
        "set_random_seed": "labpipe's Task.init does not seed random generators: seed them in your script",
        "mark_stop_request": "stop a running task from outside with `labpipe stop <task id>`",
        "stop_request": "stop a running task from outside with `labpipe stop <task id>`",
        "register_abort_callback": "labpipe stops a task by ending its process; use atexit or signal handlers in the script",
        "metrics_manager": "ClearML's internal metrics uploader; report through task.get_logger()",
        "publish_on_completion": "labpipe does not publish tasks automatically: call task.publish() once it is completed",
        "register_artifact": "labpipe has no dynamic (watched) artifacts: call upload_artifact() with the final value",
        "unregister_artifact": "labpipe has no dynamic (watched) artifacts: call upload_artifact() with the final value",
        "set_artifacts": "it writes the server's artifact records; use upload_artifact()",
        "set_repo": "a task's repository is pinned when it is created: Task.create(repo=...) or add_step/component(repo=...)",
        "set_script": "a task's script is recorded when it is created: Task.create(script=...)",
        "set_initial_iteration": "labpipe records iterations as reported, without an offset: add the offset where you report",
        "set_resource_monitor_iteration_timeout": "labpipe has no resource monitor (no machine metrics are recorded)",
        "force_requirements_env_freeze": "labpipe runs tasks in the local environment and does not freeze it; declare "
                                         "packages with Task.add_requirements or packages=",
        "force_store_standalone_script": "labpipe always stores the script's own source with the task",
        "ignore_requirements": "labpipe records only the packages a task declares or imports; leave a package out of packages= instead",
    },
    "PipelineController": {
        "create": "it makes a pipeline task from a repository or script for a ClearML server; build the pipeline with "
                  "PipelineController(...) in a script and call create_draft() or start()",
        "update_execution_plot": "labpipe draws the DAG when asked: pipe.plot_dag(path), or `labpipe plot <run id>`",
    },
    "PipelineController.Node": {
        "continue_behaviour": "labpipe steps take continue_on_fail only (add_step / add_function_step)",
        "continue_on_abort": "labpipe steps take continue_on_fail only (add_step / add_function_step)",
        "skip_children_on_abort": "labpipe skips a failed or aborted step's children unless continue_on_fail is set",
        "skip_children_on_fail": "labpipe skips a failed or aborted step's children unless continue_on_fail is set",
        "draft": "labpipe launches every step it reaches; there are no draft steps",
        "explicit_docker_image": DOCKER,
        "output_uri": CLOUD,
        "task_factory_func": "labpipe steps are tasks to clone or functions; it has no task factories",
        "recursively_parse_parameters": "labpipe resolves ${step.field} references in every parameter value, nested ones included",
        "copy": "ClearML copies a Node internally; labpipe's nodes are records of the run: read them, do not copy them",
        "set_job_started": "the pipeline run records when a step starts; read node.job_started",
        "set_job_ended": "the pipeline run records when a step ends; read node.job_ended",
    },
    "PipelineDecorator": {
        **{name: ON_RUNNING_PIPELINE for name in (
            "id", "task", "elapsed", "get_pipeline_dag", "get_running_nodes", "get_processed_nodes", "stop")},
        **{name: BUILT_BY_DECORATORS for name in (
            "add_step", "add_function_step", "add_parameter", "create_draft", "start", "start_locally", "wait",
            "is_running", "is_successful", "get_parameters", "set_pipeline_execution_time_limit", "connect_configuration",
            "tags", "version", "create")},
        "update_execution_plot": "labpipe draws the DAG when asked: `labpipe plot <run id>`",
    },
    "StorageManager": {
        "get_files_server": "there is no files server: artifacts and models go into labpipe's store (LABPIPE_STORE)",
        "set_cache_file_limit": "labpipe's cache (<store>/cache) has no file-count limit; `labpipe gc` clears what no task uses",
    },
    "Dataset": {
        "add_external_files": "labpipe datasets hold copies of their files: download remote ones with "
                              "StorageManager.get_local_copy, then add_files()",
        "get_default_storage": CLOUD,
        "get_num_chunks": "labpipe stores a dataset's files one by one, not in chunks; get_local_copy() gives all of them",
        "get_offline_mode_folder": OFFLINE_MODE,
        "import_offline_session": OFFLINE_MODE,
        "set_offline": OFFLINE_MODE,
        "move_to_project": DATASET_FIXED,
        "rename": DATASET_FIXED,
        "set_description": DATASET_FIXED,
        "squash": "labpipe does not merge datasets: a Dataset.create(parent_datasets=[...]) child already holds all its "
                  "parents' files, finalize it",
        "update_changed_files": "labpipe counts a dataset's changes from its files (list_added_files, list_modified_files)",
    },
}

_MODEL_COMMON = {
    **{name: MODEL_REPORTS for name in (
        "report_confusion_matrix", "report_histogram", "report_line_plot", "report_matrix", "report_scalar",
        "report_scatter2d", "report_scatter3d", "report_single_value", "report_surface", "report_table", "report_vector")},
    "archive": MODEL_LIFECYCLE,
    "unarchive": MODEL_LIFECYCLE,
    "get_offline_mode_folder": OFFLINE_MODE,
}
NO_OFFLINE_MEANING["Model"] = {**_MODEL_COMMON, "remove": MODEL_LIFECYCLE}
NO_OFFLINE_MEANING["InputModel"] = {
    **_MODEL_COMMON,
    "remove": MODEL_LIFECYCLE,
    "empty": "labpipe has no empty models: a model exists once a task stores weights with OutputModel.update_weights",
    "import_model": "labpipe does not register outside weights as models: use OutputModel(task=...).update_weights(path)",
    "load_model": "labpipe does not register outside weights as models: use OutputModel(task=...).update_weights(path), "
                  "then InputModel(model_id=...)",
}
NO_OFFLINE_MEANING["OutputModel"] = {
    **_MODEL_COMMON,
    "set_upload_destination": UPLOAD_DESTINATION,
    "set_default_upload_uri": UPLOAD_DESTINATION,
    "upload_storage_uri": UPLOAD_DESTINATION,
}

#: ClearML names read as attributes or properties (raise when read), not called
READ_AS_ATTRIBUTE: dict[str, frozenset[str]] = {
    "Task": frozenset({"cache_dir", "output_uri", "storage_uri", "metrics_manager", "session", "default_session",
                       "labels_stats"}),
    "PipelineController.Node": frozenset({
        "continue_behaviour", "continue_on_abort", "skip_children_on_abort", "skip_children_on_fail", "draft",
        "explicit_docker_image", "output_uri", "task_factory_func", "recursively_parse_parameters"}),
    "PipelineDecorator": frozenset({"id", "task", "tags", "version"}),
    "OutputModel": frozenset({"upload_storage_uri"}),
}


class OfflineName:
    """A ClearML name labpipe cannot honour: reading it on an instance (an attribute) or calling it (a
    method) raises NotImplementedError naming `Class.name` and the reason. On the class itself it is
    this object, so `hasattr(Task, name)` is true and documentation tools can list it."""

    def __init__(self, owner: str, name: str, reason: str, read_as_attribute: bool) -> None:
        self.owner, self.name, self.reason = owner, name, reason
        self.read_as_attribute = read_as_attribute
        self.__doc__ = f"Not available in labpipe: {reason}."

    def error(self) -> NotImplementedError:
        """The error a use of this name raises."""
        return NotImplementedError(f"{self.owner}.{self.name} is not available in labpipe: {self.reason}")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise self.error()

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        if obj is None or not self.read_as_attribute:
            return self  # a method: raises when called, on the class or an instance
        raise self.error()

    def __repr__(self) -> str:
        return f"<{self.owner}.{self.name}: not available in labpipe>"


def labpipe_classes() -> dict[str, type]:
    """The labpipe class for each ClearML class name this module covers."""
    from .dataset import Dataset
    from .logger import Logger
    from .models import InputModel, Model, OutputModel
    from .pipeline.controller import PipelineController
    from .pipeline.decorator import PipelineDecorator
    from .storage import StorageManager
    from .task import Task

    return {"Task": Task, "PipelineController": PipelineController, "PipelineController.Node": PipelineController.Node,
            "PipelineDecorator": PipelineDecorator, "Logger": Logger, "StorageManager": StorageManager,
            "Dataset": Dataset, "Model": Model, "InputModel": InputModel, "OutputModel": OutputModel}


def has_real(cls: type, name: str) -> bool:
    """Whether `cls` defines `name` itself or through a base (not as one of our stubs), or as a dataclass field."""
    for klass in cls.__mro__:
        if klass is object:
            continue
        if name in vars(klass) and not isinstance(vars(klass)[name], OfflineName):
            return True
    return name in getattr(cls, "__dataclass_fields__", {})


def install_on(cls: type, owner: str) -> None:
    """Put an `OfflineName` on `cls` (ClearML's class `owner`) for each of its entries that it does not
    implement for real. Each covered class's module calls this right after defining it, so the names
    are there however the class is imported."""
    attributes = READ_AS_ATTRIBUTE.get(owner, frozenset())
    for name, reason in NO_OFFLINE_MEANING.get(owner, {}).items():
        if not has_real(cls, name):
            setattr(cls, name, OfflineName(owner, name, reason, name in attributes))
