"""Regenerate tests/clearml_surface.json: ClearML's public names, class by class, from its source.

    python tools/clearml_surface.py [--repo /work/.mirror/allegroai+clearml/repo] [--rev HEAD]
    PYTHONPATH=. python tools/clearml_surface.py --coverage     # implemented / NotImplementedError / total

Reads ClearML's files with `git show` from a bare mirror (nothing is imported or executed) and walks
each class body with `ast`: methods, classmethods, staticmethods, properties, class attributes and
nested classes whose names do not start with "_". Base classes are followed through the module's
imports as long as they are ClearML's own (`object`, `Enum`, `six` helpers stop the walk), so a name
Task inherits from its backend base class or from AccessMixin is listed under Task.

The JSON maps a labpipe class name ("Task", "PipelineController.Node", ...) to its sorted names
("classes") and to those of them ClearML reads as attributes rather than calls ("attributes"), with
the ClearML commit it was read from; tests/test_clearml_surface.py checks labpipe against it.
"""

from __future__ import annotations

import argparse
import ast
import json
import subprocess
import sys
from pathlib import Path

DEFAULT_REPO = "/work/.mirror/allegroai+clearml/repo"
OUT = Path(__file__).resolve().parent.parent / "tests" / "clearml_surface.json"

# labpipe class name -> (ClearML module, dotted class path inside it)
CLASSES = {
    "Task": ("clearml/task.py", "Task"),
    "PipelineController": ("clearml/automation/controller.py", "PipelineController"),
    "PipelineController.Node": ("clearml/automation/controller.py", "PipelineController.Node"),
    "PipelineDecorator": ("clearml/automation/controller.py", "PipelineDecorator"),
    "Logger": ("clearml/logger.py", "Logger"),
    "StorageManager": ("clearml/storage/manager.py", "StorageManager"),
    "Dataset": ("clearml/datasets/dataset.py", "Dataset"),
    "Model": ("clearml/model.py", "Model"),
    "InputModel": ("clearml/model.py", "InputModel"),
    "OutputModel": ("clearml/model.py", "OutputModel"),
}


class Source:
    """ClearML's files at one revision of a bare git repository, parsed once each."""

    def __init__(self, repo: str, rev: str) -> None:
        self.repo = repo
        self.rev = rev
        self.trees: dict[str, ast.Module | None] = {}

    def commit(self) -> str:
        """The full commit id `rev` names."""
        out = subprocess.run(["git", "--git-dir", self.repo, "rev-parse", self.rev],
                             check=True, capture_output=True, text=True)
        return out.stdout.strip()

    def module(self, path: str) -> ast.Module | None:
        """The parsed module at `path`, or None when the revision has no such file."""
        if path not in self.trees:
            out = subprocess.run(["git", "--git-dir", self.repo, "show", f"{self.rev}:{path}"],
                                 capture_output=True, text=True)
            self.trees[path] = ast.parse(out.stdout) if out.returncode == 0 else None
        return self.trees[path]

    def resolve_module(self, importer: str, level: int, dotted: str | None) -> str | None:
        """The file an import in `importer` names: a module file or a package's __init__.py."""
        if level:
            base = Path(importer).parent
            for _ in range(level - 1):
                base = base.parent
        else:
            base = Path()
        parts = dotted.split(".") if dotted else []
        target = base.joinpath(*parts) if parts else base
        for candidate in (f"{target}.py", f"{target}/__init__.py"):
            if self.module(candidate) is not None:
                return candidate
        return None

    def find_class(self, path: str, name: str, depth: int = 0) -> tuple[str, ast.ClassDef] | None:
        """Where class `name` (a top-level name in `path`) is defined, following imports and aliases."""
        tree = self.module(path)
        if tree is None or depth > 8:
            return None
        for node in tree.body:
            if isinstance(node, ast.ClassDef) and node.name == name:
                return path, node
        for node in tree.body:
            if isinstance(node, ast.ImportFrom):
                for alias in node.names:
                    if (alias.asname or alias.name) == name:
                        target = self.resolve_module(path, node.level, node.module)
                        if target is not None:
                            return self.find_class(target, alias.name, depth + 1)
        return None


def nested(cls: ast.ClassDef, name: str) -> ast.ClassDef:
    """The class `name` defined directly inside `cls`'s body."""
    for node in cls.body:
        if isinstance(node, ast.ClassDef) and node.name == name:
            return node
    raise LookupError(f"{cls.name} has no nested class {name}")


def body_statements(body: list[ast.stmt]):
    """A class body's statements, including those inside if/try blocks (conditional definitions)."""
    for node in body:
        if isinstance(node, ast.If):
            yield from body_statements(node.body)
            yield from body_statements(node.orelse)
        elif isinstance(node, ast.Try):
            yield from body_statements(node.body)
            for handler in node.handlers:
                yield from body_statements(handler.body)
            yield from body_statements(node.orelse)
        else:
            yield node


def is_property(node: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    """Whether a function is read as an attribute: @property, @x.setter / @x.getter, @cached_property."""
    for deco in node.decorator_list:
        name = deco.attr if isinstance(deco, ast.Attribute) else deco.id if isinstance(deco, ast.Name) else ""
        if name in ("property", "setter", "getter", "deleter", "cached_property"):
            return True
    return False


def own_names(cls: ast.ClassDef) -> dict[str, str]:
    """Public names a class body defines itself: {name: 'method' or 'attribute'} (properties, class
    attributes and nested classes are read as attributes; functions are called)."""
    names: dict[str, str] = {}
    for node in body_statements(cls.body):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            names[node.name] = "attribute" if is_property(node) or names.get(node.name) == "attribute" else "method"
        elif isinstance(node, ast.ClassDef):
            names[node.name] = "attribute"
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    names[target.id] = "attribute"
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names[node.target.id] = "attribute"
    return {n: kind for n, kind in names.items() if not n.startswith("_")}


def surface(src: Source, path: str, cls: ast.ClassDef, seen: set[tuple[str, str]] | None = None) -> dict[str, str]:
    """A class's public names (and their kinds) plus those of its ClearML base classes; a class's own
    definition of a name wins over its bases'."""
    seen = set() if seen is None else seen
    if (path, cls.name) in seen:
        return {}
    seen.add((path, cls.name))
    names: dict[str, str] = {}
    for base in reversed(cls.bases):  # the first base wins, as in the method resolution order
        if not isinstance(base, ast.Name):
            continue  # six.with_metaclass(...) and the like: not ClearML classes
        found = src.find_class(path, base.id)
        if found is not None:
            names.update(surface(src, *found, seen=seen))
    names.update(own_names(cls))
    return names


def extract(repo: str, rev: str) -> dict:
    """The JSON document: the commit read, each labpipe class's sorted ClearML names, and which of
    those ClearML reads as attributes (properties, class attributes, nested classes)."""
    src = Source(repo, rev)
    classes: dict[str, list[str]] = {}
    attributes: dict[str, list[str]] = {}
    for labpipe_name, (path, dotted) in CLASSES.items():
        outer, *inner = dotted.split(".")
        found = src.find_class(path, outer)
        if found is None:
            raise SystemExit(f"{outer} not found in {path} at {rev}")
        where, cls = found
        for part in inner:
            cls = nested(cls, part)
        names = surface(src, where, cls)
        classes[labpipe_name] = sorted(names)
        attributes[labpipe_name] = sorted(n for n, kind in names.items() if kind == "attribute")
    return {"clearml_commit": src.commit(), "classes": classes, "attributes": attributes}


def coverage(doc: dict) -> tuple[int, int, int]:
    """(implemented, NotImplementedError, total) of the listed names on labpipe's classes (imports labpipe)."""
    from labpipe.offline import NO_OFFLINE_MEANING

    stubbed = sum(len(set(names) & set(NO_OFFLINE_MEANING.get(owner, {}))) for owner, names in doc["classes"].items())
    total = sum(len(names) for names in doc["classes"].values())
    return total - stubbed, stubbed, total


def main(argv: list[str] | None = None) -> int:
    """Write the JSON and print how many names each class has."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", default=DEFAULT_REPO)
    parser.add_argument("--rev", default="HEAD")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--coverage", action="store_true",
                        help="print how many of the names in --out labpipe implements (run with labpipe importable)")
    args = parser.parse_args(argv)
    if args.coverage:
        implemented, stubbed, total = coverage(json.loads(args.out.read_text()))
        print(f"implemented {implemented} / NotImplementedError {stubbed} / total {total}")
        return 0
    doc = extract(args.repo, args.rev)
    args.out.write_text(json.dumps(doc, indent=1) + "\n")
    for name, names in doc["classes"].items():
        print(f"{name:26} {len(names):4}")
    print(f"{'total':26} {sum(len(v) for v in doc['classes'].values()):4}  -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
