"""The formats a pipeline DAG is written in, and which one a file name asks for."""

from __future__ import annotations

from pathlib import Path

from labpipe.errors import PipelineError
from labpipe.pipeline.dag import DAG

FORMATS = ("png", "svg", "dot", "mermaid")
# File suffixes each format is known by (the first is the one `labpipe plot` names a file with).
SUFFIXES = {"png": (".png",), "svg": (".svg",), "dot": (".dot", ".gv"), "mermaid": (".mmd", ".mermaid")}


def format_for(path: str | Path | None, given: str | None = None) -> str:
    """The format to write: `given` if named, else the one `path`'s suffix says, else png.

    Raises PipelineError for an unknown format, or a suffix that names none (listing the known ones).
    """
    known = ", ".join(FORMATS)
    if given is not None:
        fmt = given.lower()
        if fmt not in FORMATS:
            raise PipelineError(f"unknown DAG format {given!r}; known formats: {known}")
        return fmt
    suffix = Path(path).suffix.lower() if path is not None else ""
    for fmt, suffixes in SUFFIXES.items():
        if suffix in suffixes:
            return fmt
    if not suffix:
        return "png"
    shown = ", ".join(s for suffixes in SUFFIXES.values() for s in suffixes)
    raise PipelineError(
        f"cannot tell the DAG format from {Path(path).name!r}: known suffixes are {shown}; "
        f"name the file so, or pass --format ({known})"
    )


def render_dag(dag: DAG, fmt: str, *, title: str | None = None) -> bytes:
    """The DAG in format `fmt` (one of FORMATS) as bytes (text formats are UTF-8)."""
    if fmt in ("png", "svg"):
        from labpipe.pipeline.dag_plot import plot_dag

        return plot_dag(dag, title=title, format=fmt)
    from labpipe.pipeline import dag_text

    if fmt == "dot":
        return dag_text.to_dot(dag, title=title).encode()
    if fmt == "mermaid":
        return dag_text.to_mermaid(dag, title=title).encode()
    raise PipelineError(f"unknown DAG format {fmt!r}; known formats: {', '.join(FORMATS)}")
