"""Components and pipelines used by the pipeline tests (a real module: workers run their source)."""

from labpipe import PipelineDecorator


@PipelineDecorator.component(return_values=["numbers"], cache=True)
def make_numbers(n: int = 3, salt: str = ""):
    return list(range(n))


@PipelineDecorator.component(return_values=["total"], cache=True)
def add_up(numbers, bonus: int = 0):
    return sum(numbers) + bonus


@PipelineDecorator.component(return_values=["a", "b"])
def split_pair(numbers):
    return numbers[:1], numbers[1:]


@PipelineDecorator.component()
def square(x: int):
    return x * x


@PipelineDecorator.component(return_values=["value"])
def explode(message: str = "boom"):
    raise ValueError(message)


@PipelineDecorator.component(return_values=["value"], continue_on_fail=True)
def explode_allowed(message: str = "allowed boom"):
    raise ValueError(message)


@PipelineDecorator.component(return_values=["a", "b"])
def wrong_count():
    return 1, 2, 3


@PipelineDecorator.component(return_values=["value"])
def uses_missing_import():
    return np.zeros(3)  # noqa: F821 - the point: components run as standalone scripts


@PipelineDecorator.component(return_values=["value"])
def sleepy(seconds: float = 0.3):
    import time

    time.sleep(seconds)
    return seconds


@PipelineDecorator.component(return_values=["value"], retry_on_failure=2)
def flaky(marker: str):
    import os

    # fails until it has run three times (counted in a file), then succeeds
    count = int(open(marker).read()) if os.path.exists(marker) else 0
    with open(marker, "w") as fh:
        fh.write(str(count + 1))
    if count < 2:
        raise RuntimeError(f"flaky failure {count}")
    return count


@PipelineDecorator.component(return_values=["value"], monitor_metrics=[("loss", "train")], monitor_artifacts=[("extra", "copied")])
def reports_metrics():
    from labpipe import Task

    task = Task.current_task()
    for i, v in enumerate([0.5, 0.25]):
        task.get_logger().report_scalar("loss", "train", v, i)
    task.upload_artifact("extra", {"k": 1})
    return 1


@PipelineDecorator.pipeline(name="chain", project="tests", version="1.0")
def chain_pipeline(n=4, bonus=1):
    numbers = make_numbers(n)
    return add_up(numbers, bonus=bonus)


@PipelineDecorator.pipeline(name="named-result", project="tests", version="1.0", return_value="res")
def named_result_pipeline(n=3):
    return add_up(make_numbers(n), bonus=10)


@PipelineDecorator.pipeline(name="sweep", project="tests", version="1.0")
def sweep_pipeline(values=(1, 2, 3)):
    results = [square(v) for v in values]
    return [int(r) for r in results]


def produce(rows: int = 3):
    from labpipe import Task

    task = Task.current_task()
    task.upload_artifact("data", list(range(rows)))
    task.get_logger().report_scalar("prep", "rows", rows, 0)
    return rows


def consume(data_url: str = "", lr: float = 1.0):
    import pickle

    from labpipe import StorageManager

    with open(StorageManager.get_local_copy(data_url), "rb") as fh:
        return sum(pickle.load(fh)) * lr


def numbers(n: int = 3):
    return list(range(n))


def total(xs, bonus: int = 0):
    return sum(xs) + bonus


def slow(seconds: float = 5.0):
    import time

    time.sleep(seconds)
    return seconds


def failing():
    raise RuntimeError("controller step failure")


@PipelineDecorator.component(return_values=["value"], monitor_models=["weights_*"])
def saves_models(folder: str):
    import os

    from labpipe import OutputModel, Task

    task = Task.current_task()
    for name in ("weights_a", "weights_b", "other"):
        path = os.path.join(folder, name + ".bin")
        with open(path, "wb") as fh:
            fh.write(name.encode())
        OutputModel(task=task, name=name).update_weights(weights_filename=path)
    return 1


def frame_total(df):
    return int(df["v"].sum())


def saves_weights(folder: str = "."):
    import os

    from labpipe import OutputModel, Task

    path = os.path.join(folder, "weights.bin")
    with open(path, "wb") as fh:
        fh.write(b"trained weights")
    OutputModel(task=Task.current_task(), name="net").update_weights(weights_filename=path)
    return 1


def reads_file(url: str = ""):
    from labpipe import StorageManager

    with open(StorageManager.get_local_copy(url), "rb") as fh:
        return fh.read().decode()


def reports_to_pipeline(x: int = 1):
    """A controller's function step that reports on its pipeline through the class, as ClearML documents."""
    from labpipe import PipelineController

    PipelineController.get_logger().report_scalar("from-step", "x", float(x), 0)
    PipelineController.upload_artifact("from-step", {"x": x})
    return x
