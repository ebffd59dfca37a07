"""Python source as the cache sees it: normalised text, the project's own modules, library or not.

A step's code half of the cache key (``hashing.code_key``) and a function passed as an argument
(``fingerprint``) both need the same three answers about code: what it does once layout, comments and
docstrings are set aside (``normalize_source``), which of the project's own files it imports
(``find_local_modules``, ``local_module_sources``), and whether it belongs to a library (stdlib,
site-packages, C extensions), whose version is a setting rather than the project's code
(``is_library_code``). ``file_stamps`` tells a caller that kept a key whether those files changed since.

The lowest of the three hashing layers (``source`` <- ``fingerprint`` <- ``hashing``): stdlib only.
Nothing here imports the code it looks at; files are read and parsed with ``ast``.
"""

from __future__ import annotations

import ast
import os
import sys
import textwrap
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from labpipe.errors import Unfingerprintable

__all__ = [
    "LocalModules",
    "file_stamps",
    "find_local_modules",
    "is_library_code",
    "is_library_path",
    "local_module_sources",
    "normalize_source",
]

# -------------------------------------------------------------------------------- normalised source


def normalize_source(source: str, *, drop_decorators: bool = True) -> str:
    """Python source reduced to what it does: comments, docstrings, blank lines and layout removed.

    source: a function, class or module's source text; it may be indented (a method, a nested function).
    drop_decorators: remove the decorators of the top-level functions and classes. True for a component's
        own source, whose decorator settings are hashed separately (``code_key(settings=...)``); pass
        False for a whole module or a helper, where a decorator is part of what the code does.

    Why ``ast``: ``ast.unparse(ast.parse(s))`` maps every layout of the same code to one text, while any
    real change (a constant, a name, an operator) shows. Raises ``Unfingerprintable`` if it does not parse.
    """
    tree = _parse(source)
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            body = node.body
            if (
                body
                and isinstance(body[0], ast.Expr)
                and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)
            ):
                # A def whose only statement was its docstring still needs a body to stay valid code.
                node.body = body[1:] or ([] if isinstance(node, ast.Module) else [ast.Pass()])
    if drop_decorators:
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                node.decorator_list = []
    return ast.unparse(tree)


def _parse(source: str) -> ast.Module:
    """Parse possibly-indented source, or raise ``Unfingerprintable`` saying why it cannot be read."""
    try:
        return ast.parse(textwrap.dedent(source))
    except (SyntaxError, ValueError) as exc:
        first = next((line for line in source.splitlines() if line.strip()), "")
        if first[:1] in (" ", "\t"):
            # dedent() gives up when a multi-line string inside the code starts at column 0; wrapping the
            # indented block in `if 1:` parses it as it stands.
            try:
                wrapped = ast.parse("if 1:\n" + source)
                return ast.Module(body=wrapped.body[0].body, type_ignores=[])
            except (SyntaxError, ValueError):
                pass
        where = f" at line {exc.lineno}" if isinstance(exc, SyntaxError) and exc.lineno else ""
        detail = exc.msg if isinstance(exc, SyntaxError) else str(exc)
        raise Unfingerprintable(
            f"source does not parse as Python ({detail}{where}); its code has no stable fingerprint, "
            "so this step is not cached. Check that the function's source file matches the running code."
        ) from None


# ------------------------------------------------------------------------------------ local modules


@dataclass(frozen=True)
class LocalModules:
    """The project's own modules some code imports, and what to watch to know they are still current.

    sources: {module name: normalised source}, sorted by name (``hashing.code_key``'s ``local_modules``).
    watched: the folders searched and the files read, as absolute paths.
    stamps: ``file_stamps(watched)``, each taken before that folder was searched or that file was read,
        so an edit made while they were being read still shows as a change.
    """

    sources: dict[str, str]
    watched: tuple[str, ...]
    stamps: tuple


def local_module_sources(func_source: str, root: str | os.PathLike) -> dict[str, str]:
    """The project's own modules that a component imports, transitively: {module name: normalised source}.

    func_source: the component's source; its imports (also those inside the function body) are read.
    root: the one folder its local imports resolve from. ``find_local_modules`` takes several sources
    (a component and its helpers) and several folders, and says which files it read.
    """
    return find_local_modules([func_source], [root]).sources


def find_local_modules(sources: Iterable[str], roots: Sequence[str | os.PathLike]) -> LocalModules:
    """The project's own modules that some functions import, transitively, and the files they came from.

    sources: function sources (a component and its helper functions); their imports, also those inside
        function bodies, are read.
    roots: the folders the step's local imports resolve from, in sys.path order (for a pipeline step,
        ``function_task.local_import_folders``: its function's folder, then the pipeline script's).

    Modules are found by looking at files (root/name.py, root/pkg/__init__.py, root/pkg/sub.py), never by
    importing them. Standard-library names, modules that are not files under a root (numpy) and files
    inside a site-packages folder do not count: their version is a setting, not the project's code. Why
    at all: editing a helper module beside the pipeline script must invalidate the steps that use it.
    """
    root_paths = list(dict.fromkeys(Path(root).resolve() for root in roots))
    # Stamped before anything is read: an edit made during the search then shows as a change later.
    # A folder's own mtime changes when a file is added to it, so a new module that now shadows an
    # installed one (or another folder's) also shows.
    stamped: dict[str, tuple | None] = {}

    def watch(path: Path) -> None:
        key = str(path)
        if key not in stamped:
            stamped[key] = file_stamps([key])[0]

    for root in root_paths:
        watch(root)
    found: dict[str, str] = {}
    pending: list[str] = []
    for source in sources:
        pending.extend(_imported_modules(_parse(source), package=None))
    seen: set[str] = set()
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        top = name.partition(".")[0]
        if top in sys.builtin_module_names or _is_frozen(top):
            continue  # these always win over a same-named file beside the script
        # Any other standard-library name (os, json) simply has no file under a root; a project file
        # that shadows one (statistics.py) is what the step imports, so it counts.
        path = _module_file(root_paths, name)
        if path is None:
            continue
        watch(path.parent)
        watch(path)
        text = _read_source(path)
        try:
            tree = _parse(text)
        except Unfingerprintable:
            # A file that does not parse still has content; raw text keeps its edits visible to the key.
            found[name] = text
            continue
        found[name] = normalize_source(text, drop_decorators=False)
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        pending.extend(_imported_modules(tree, package))
    return LocalModules(dict(sorted(found.items())), tuple(stamped), tuple(stamped.values()))


def file_stamps(paths: Iterable[str]) -> tuple:
    """(mtime in ns, size, inode) of each path, None for one that is gone: any difference means re-read.

    One stat per path (microseconds), so a key kept in memory can be checked on every use. The inode
    catches an editor that saves by renaming a new file over the old one within one clock tick.
    """
    out = []
    for path in paths:
        try:
            st = os.stat(path)
        except OSError:
            out.append(None)
        else:
            out.append((st.st_mtime_ns, st.st_size, st.st_ino))
    return tuple(out)


def _imported_modules(tree: ast.AST, package: str | None):
    """Every module name an import statement in ``tree`` may load, parents included (a.b.c loads a, a.b).

    package: the importing module's package, for relative imports; None for a standalone script, where a
    relative import cannot work and is skipped.
    """
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield from _with_parents(alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                if not package:
                    continue
                parts = package.split(".")
                if node.level - 1 >= len(parts):
                    continue
                base = ".".join(parts[: len(parts) - (node.level - 1)])
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module
            yield from _with_parents(module)
            for alias in node.names:
                if alias.name != "*":
                    yield f"{module}.{alias.name}"  # `from pkg import sub` may name a submodule


def _with_parents(name: str):
    parts = name.split(".")
    for i in range(1, len(parts) + 1):
        yield ".".join(parts[:i])


def _module_file(roots: list[Path], name: str) -> Path | None:
    """The file that `import name` loads with ``roots`` first on sys.path, if it is the project's."""
    top = name.partition(".")[0]
    for root in roots:
        if (root / top / "__init__.py").is_file() or (root / f"{top}.py").is_file():
            # Python's path finder takes a regular package or a module from the first folder that has
            # one, and the package's submodules from inside it.
            return _file_under(root, name)
    # No folder has it as a regular package or module: a namespace package (a folder without
    # __init__.py), whose parts may lie in several folders.
    for root in roots:
        found = _file_under(root, name)
        if found is not None:
            return found
    return None


def _file_under(root: Path, name: str) -> Path | None:
    base = root.joinpath(*name.split("."))
    # A package directory wins over a same-named module file, as in Python's own path finder.
    for candidate in (base / "__init__.py", base.parent / f"{base.name}.py"):
        if candidate.is_file():
            return None if is_library_path(candidate) else candidate
    return None


def _read_source(path: Path) -> str:
    from importlib.util import decode_source

    # decode_source honours a PEP 263 coding line and normalises newlines, as the import system does.
    return decode_source(path.read_bytes())


# ------------------------------------------------------------------------------- library or project


def is_library_code(obj: object) -> bool:
    """True for code from the standard library, site-packages or a C extension (not the project's).

    Decided by where the module's file is, not by its name: a project file called `code.py` or
    `statistics.py` is the project's code even though the standard library has a module of that name.
    """
    module_name = getattr(obj, "__module__", None)
    if not module_name or module_name == "__main__":
        return False
    module = sys.modules.get(module_name)
    if module is None:
        return False
    file = getattr(module, "__file__", None)
    if file is None:
        # Built-in and frozen modules have no file; a module made at run time (exec) is the user's.
        return module_name in sys.builtin_module_names or _is_frozen(module_name)
    return is_library_path(Path(file))


def is_library_path(path: str | os.PathLike) -> bool:
    """True for a file or folder that belongs to a library, False for the project's own code.

    A library's is anything, once links are resolved, inside: a ``site-packages`` or ``dist-packages``
    folder (this environment's, the user site, another virtual environment's, also one that lives
    inside the project folder), the standard library, this interpreter's install folders (sysconfig's
    stdlib, platstdlib, purelib, platlib), or labpipe itself (wherever it is installed: an editable
    checkout is in no site-packages). A name that is no file (``<string>``, ``<stdin>``, a step's
    ``<labpipe step ...>``) is not a library's.

    The one rule for every caller: the cache (a library's code counts by name and version, the
    project's by its source), the pipeline's local import folders, and the warm worker
    (agent/child.py, agent/worker.py), which imports library modules ahead of a fork but never the
    project's, since a project module imported once would go stale when the user edits it.
    """
    text = os.fspath(path)
    if text.startswith("<") and text.endswith(">"):
        return False
    real = os.path.realpath(text)
    if (real + os.sep).startswith(_library_roots()):
        return True
    parts = set(real.lower().split(os.sep))
    return "site-packages" in parts or "dist-packages" in parts


_LIBRARY_ROOTS: list[tuple[str, ...]] = []


def _library_roots() -> tuple[str, ...]:
    """The folders whose contents are libraries' whatever their names, each ending with a separator
    (computed once; a warm worker computes it before it forks, so its children share it)."""
    if not _LIBRARY_ROOTS:
        import sysconfig

        paths = sysconfig.get_paths()
        roots = {paths.get(k) for k in ("stdlib", "platstdlib", "purelib", "platlib")}
        # os.py lives at the top of the standard library (frozen modules keep their __file__ since 3.11)
        roots.add(os.path.dirname(os.__file__))
        roots.add(os.path.dirname(os.path.abspath(__file__)))  # labpipe itself
        _LIBRARY_ROOTS.append(tuple(sorted(os.path.realpath(r).rstrip(os.sep) + os.sep for r in roots if r)))
    return _LIBRARY_ROOTS[0]


def _is_frozen(name: str) -> bool:
    from importlib.machinery import FrozenImporter

    return FrozenImporter.find_spec(name) is not None
