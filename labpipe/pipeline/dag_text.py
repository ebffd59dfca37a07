"""A pipeline DAG as text another tool draws: Graphviz `dot` and Mermaid `flowchart`.

Same boxes as the picture (name; status and duration; a failed step's first error line) and the
same status colours, so a DAG pasted into a Markdown page or rendered by `dot -Tsvg` reads alike.
What a person reads says a status in the CLI's words (`labpipe.status.shown`: "stopped", never
"aborted"); Mermaid's class names stay the node statuses, which are identifiers nobody reads.
"""

from __future__ import annotations

from labpipe.pipeline.dag import DAG, NODE_STATUSES
from labpipe.pipeline.dag_plot import BORDER_COLORS, DASHED, STATUS_COLORS, box_lines
from labpipe.status import shown


def to_dot(dag: DAG, *, title: str | None = None) -> str:
    """Graphviz text: `digraph pipeline { ... }`, laid out left to right, boxes filled by status."""
    lines = ["digraph pipeline {", "  rankdir=LR;", '  node [shape=box, style="rounded,filled", fontname="Helvetica"];']
    if title:
        lines.append(f"  label={_dot_quote(title)}; labelloc=t;")
    for node in dag:
        style = "rounded,filled,dashed" if node.status in DASHED else "rounded,filled"
        label = "\\n".join(_dot_escape(line) for line in box_lines(node))
        lines.append(
            f'  {_dot_quote(node.name)} [label="{label}", fillcolor="{STATUS_COLORS[node.status]}", '
            f'color="{BORDER_COLORS[node.status]}", style="{style}", tooltip="{shown(node.status)}"];'
        )
    for node in dag:
        for parent in node.parents:
            lines.append(f"  {_dot_quote(parent)} -> {_dot_quote(node.name)};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _dot_escape(text: str) -> str:
    return " ".join(text.split()).replace("\\", "\\\\").replace('"', '\\"')


def _dot_quote(text: str) -> str:
    return f'"{_dot_escape(text)}"'


def to_mermaid(dag: DAG, *, title: str | None = None) -> str:
    """Mermaid text: `flowchart LR`, one class per status present (its fill and border colours).

    Step names can hold anything, so nodes get ids s0, s1, ... and the names go in quoted labels.
    """
    ids = {name: f"s{i}" for i, name in enumerate(dag.names())}
    lines = []
    if title:
        lines += ["---", f"title: {_mermaid_escape(title)}", "---"]
    lines.append("flowchart LR")
    for node in dag:
        label = "<br/>".join(_mermaid_escape(line) for line in box_lines(node))
        lines.append(f'  {ids[node.name]}["{label}"]:::{node.status}')
    for node in dag:
        for parent in node.parents:
            lines.append(f"  {ids[parent]} --> {ids[node.name]}")
    present = {node.status for node in dag}
    for status in NODE_STATUSES:
        if status in present:
            dash = ",stroke-dasharray:4 3" if status in DASHED else ""
            lines.append(f"  classDef {status} fill:{STATUS_COLORS[status]},stroke:{BORDER_COLORS[status]}{dash}")
    return "\n".join(lines) + "\n"


def _mermaid_escape(text: str) -> str:
    # Mermaid's entity codes: a quote would end the label, <, > and & would read as markup.
    text = " ".join(text.split())
    for char, code in (("&", "#amp;"), ('"', "#quot;"), ("<", "#lt;"), (">", "#gt;")):
        text = text.replace(char, code)
    return text
