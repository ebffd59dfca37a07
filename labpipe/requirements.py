"""What a task needs from its environment: packages it imports or declares, and container settings.

A task records `packages` (declared, or detected from its function's imports) and, like ClearML, its
`docker` settings. Before running a task the worker checks the packages against its own interpreter and
fails the task with a message that lists exactly what is missing, instead of letting it die half-way
with an ImportError. There is no container runtime to honour `docker` with, so the worker says once
per image that it runs such tasks in the local environment.
"""

from __future__ import annotations

import ast
import logging
import os
import re
import shlex
import shutil
import sys
import textwrap
from collections.abc import Iterable, Mapping
from importlib import metadata
from pathlib import Path

from labpipe.errors import RequirementsError

log = logging.getLogger(__name__)

# Top-level names that are never packages to install: labpipe runs the task, so it is there by definition.
_NEVER_PACKAGES = frozenset({"labpipe", "__main__"})

# Where a docker daemon listens when DOCKER_HOST does not say otherwise (Linux, rootless, Docker Desktop).
_DOCKER_SOCKETS = ("/var/run/docker.sock", "/run/docker.sock")


# -- detecting what a function imports -------------------------------------------------------------


def detect_packages(source: str) -> list[str]:
    """The distributions a function's source imports, pinned to the versions installed here.

    source: the function's source (as stored on a function task); imports anywhere in it count,
    including those inside the body, which is where a component's imports live.

    Returns sorted `name==version` strings using distribution names (`sklearn` -> `scikit-learn==1.9.1`,
    `yaml` -> `PyYAML==6.0.3`), which is what ClearML records for a task's installed packages.
    The standard library, labpipe itself and relative imports are left out, and so is any module that
    no installed distribution provides: that is a local file beside the script, not something to install.
    """
    dists: set[str] = set()
    for dotted in _imported_modules(source):
        top = dotted.partition(".")[0]
        if top in sys.stdlib_module_names or top in _NEVER_PACKAGES:
            continue
        dists.update(_distributions_for(dotted))
    return sorted((_pinned(name) for name in dists), key=str.lower)


def _imported_modules(source: str) -> list[str]:
    """Absolute dotted module names imported anywhere in `source` (relative imports excluded)."""
    try:
        tree = ast.parse(textwrap.dedent(source))
    except SyntaxError as exc:
        raise RequirementsError(
            f"cannot detect packages: the function source does not parse ({exc.msg}, line {exc.lineno}: "
            f"{(exc.text or '').strip()!r}); pass packages=[...] explicitly or fix the source"
        ) from exc
    modules = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules.append(node.module)
    return modules


def _module_distributions() -> Mapping[str, list[str]]:
    """Top-level module -> distributions providing it (see labpipe.environment for the caching)."""
    from .environment import installed

    return installed()[0]


def _distributions_for(dotted: str) -> list[str]:
    """The distribution(s) that provide the module `dotted` ([] when none does: a local module)."""
    top = dotted.partition(".")[0]
    candidates = list(dict.fromkeys(_module_distributions().get(top, ())))
    if len(candidates) <= 1 or "." not in dotted:
        return candidates
    # A namespace package (`google`, `azure`) is shared by many distributions: keep the ones that ship
    # the submodule actually imported, so `from google.cloud import storage` does not record every
    # google-* distribution installed here.
    rel = dotted.replace(".", "/")
    narrowed = [name for name in candidates if _ships(name, rel)]
    return narrowed or candidates


def _ships(dist_name: str, rel: str) -> bool:
    """Whether distribution `dist_name` installs the module path `rel` (package dir or .py file)."""
    try:
        files = metadata.distribution(dist_name).files or ()
    except metadata.PackageNotFoundError:
        return False
    return any(f.as_posix().startswith(rel + "/") or f.as_posix() == rel + ".py" for f in files)


def _pinned(dist_name: str) -> str:
    """`name==version` for an installed distribution, the bare name if its version cannot be read."""
    from .environment import installed

    version = installed()[1].get(dist_name)
    if version is None:
        try:
            version = metadata.version(dist_name)
        except metadata.PackageNotFoundError:
            return dist_name
    return f"{dist_name}=={version}"


# -- declared requirements ---------------------------------------------------------------------------


def parse_requirements(packages: list[str] | str | os.PathLike) -> list[str]:
    """Requirement strings from a list of them or from a requirements.txt file.

    packages: `["pandas>=2", "scikit-learn"]`, or the path of a requirements.txt (a list item that names
    an existing file is read as one too, since `packages="requirements.txt"` may arrive wrapped in a list).

    Comments and blank lines are ignored; pip options (`-r`, `-e`, `--index-url` ...) and bare paths or
    URLs are skipped with a note in the log, since they name no distribution that can be checked.
    Returns normalised strings (`"numpy >= 1.0"` -> `"numpy>=1.0"`), so that equal requirements record
    equally. A line that is not a valid requirement raises RequirementsError naming the line.
    """
    if isinstance(packages, str | os.PathLike):
        return _parse_file(Path(packages))
    out: list[str] = []
    for i, item in enumerate(packages):
        if not isinstance(item, str):
            raise RequirementsError(
                f"packages[{i}] is {type(item).__name__} {item!r}; expected a requirement string such as 'pandas>=2'"
            )
        if _names_a_file(item):
            out.extend(_parse_file(Path(item)))
        else:
            req = _parse_line(item, where=f"packages[{i}]")
            if req is not None:
                out.append(req)
    return list(dict.fromkeys(out))


def _names_a_file(item: str) -> bool:
    stripped = item.strip()
    return stripped.endswith(".txt") and Path(stripped).expanduser().is_file()


def _parse_file(path: Path) -> list[str]:
    path = path.expanduser()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RequirementsError(
            f"cannot read requirements file {str(path)!r}: {exc.strerror or exc}; pass a list of requirement "
            "strings or the path of an existing requirements.txt"
        ) from exc
    out: list[str] = []
    lineno, pending = 0, ""
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = _strip_comment(raw)
        if line.endswith("\\"):  # pip joins continuation lines
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        req = _parse_line(line, where=f"{path}:{lineno}")
        if req is not None:
            out.append(req)
    if pending.strip():
        req = _parse_line(pending, where=f"{path}:{lineno}")
        if req is not None:
            out.append(req)
    return list(dict.fromkeys(out))


def _strip_comment(line: str) -> str:
    # pip's rule: '#' starts a comment at the line start or after whitespace (a URL fragment keeps its '#').
    if line.lstrip().startswith("#"):
        return ""
    for i, ch in enumerate(line):
        if ch == "#" and i > 0 and line[i - 1].isspace():
            return line[:i].strip()
    return line.strip()


def _parse_line(line: str, where: str) -> str | None:
    """One requirement, normalised; None for lines that carry none (blank, option, bare path/URL)."""
    line = line.strip()
    if not line:
        return None
    if line.startswith("-"):
        log.info("requirements %s: skipping pip option %r (only named requirements are checked)", where, line)
        return None
    if line.startswith((".", "/", "~")):
        log.info("requirements %s: skipping local path %r (it names no distribution to check)", where, line)
        return None
    from packaging.requirements import InvalidRequirement, Requirement

    try:
        return str(Requirement(line))
    except InvalidRequirement as exc:
        if "://" in line or line.endswith((".whl", ".tar.gz", ".zip")):
            log.info(
                "requirements %s: skipping %r (a bare URL or archive names no distribution to check)",
                where,
                line,
            )
            return None
        raise RequirementsError(
            f"requirements {where}: {line!r} is not a valid requirement ({_first_line(exc)}); "
            "write it as in requirements.txt, e.g. 'scikit-learn>=1.3' or 'torch==2.3.1'"
        ) from exc


def _first_line(exc: Exception) -> str:
    # packaging's messages add a caret diagram on further lines; a status message wants the sentence.
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


# -- checking them against this interpreter ---------------------------------------------------------

# Per process: the worker checks before every task, and the answer only changes if someone installs
# into the running interpreter's environment, which a worker restart then picks up.
_check_cache: dict[str, tuple[str, str] | None] = {}

#: distributions a ClearML requirements list names that labpipe itself stands in for
PROVIDED = frozenset({"clearml", "clearml-agent"})


def check_requirements(packages: Iterable[str]) -> list[str]:
    """What this interpreter's environment lacks of `packages`; an empty list means the task can run.

    packages: requirement strings as recorded on a task (`"scikit-learn>=1.3"`, `"torch==2.3.1"`,
    `"pywin32; sys_platform == 'win32'"`). A requirement whose marker is false here is satisfied, and so
    are `clearml` and `clearml-agent` (labpipe plays their part). Only a distribution that is not
    installed at all (or a requirement that cannot be read) is a problem: `"nonexistent-pkg (not
    installed)"`. An installed version the requirement does not accept is only a warning (see
    `version_warnings`): ClearML's agent would install that version; labpipe runs in the environment it
    has. Extras (`pkg[extra]`) are checked for `pkg` only.
    """
    return [message for kind, message in _checked(packages) if kind == "missing"]


def version_warnings(packages: Iterable[str]) -> list[str]:
    """The requirements of `packages` that are installed at a version they do not accept, each naming
    both: `"scikit-learn==1.2.2 (installed: 1.9.1)"`."""
    return [message for kind, message in _checked(packages) if kind == "version"]


def _checked(packages: Iterable[str]) -> list[tuple[str, str]]:
    out = []
    for spec in packages:
        if spec not in _check_cache:
            _check_cache[spec] = _check_one(spec)
        if _check_cache[spec] is not None:
            out.append(_check_cache[spec])
    return out


def _check_one(spec: str) -> tuple[str, str] | None:
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.utils import canonicalize_name
    from packaging.version import InvalidVersion, Version

    try:
        req = Requirement(spec)
    except InvalidRequirement as exc:
        return "missing", f"{spec} (not a valid requirement: {_first_line(exc)})"
    if req.marker is not None and not req.marker.evaluate():
        return None
    if canonicalize_name(req.name) in PROVIDED:
        return None
    try:
        installed = metadata.version(req.name)
    except metadata.PackageNotFoundError:
        return "missing", f"{spec} (not installed)"
    if not req.specifier:
        return None
    try:
        version = Version(installed)
    except InvalidVersion:
        return "version", f"{spec} (installed: {installed}, not a version that can be compared)"
    # prereleases=True: an installed 2.0rc1 satisfies ">=1.0"; pip's own check counts it too.
    if req.specifier.contains(version, prereleases=True):
        return None
    return "version", f"{spec} (installed: {installed})"


_PROBLEM = re.compile(r"^(.*?) \((?:installed: |not installed\))")


def describe_missing(task_name: str, problems: list[str]) -> str:
    """The status message of a task that cannot run here because of `problems` (from check_requirements)."""
    lines = [f"task {task_name!r} needs packages this worker's environment does not satisfy:"]
    lines += [f"  - {p}" for p in problems]
    # Each problem is "<requirement> (<what is installed>)": the requirement is what pip should get.
    reqs = [m.group(1) for p in problems if (m := _PROBLEM.match(p))]
    if reqs:
        lines.append(
            f"Install them into the worker's environment ({sys.executable} -m pip install "
            f"{' '.join(shlex.quote(r) for r in reqs)}), restart the worker (`labpipe agent`, or the pipeline "
            "that owns the pool), and enqueue the task again; or change the task's packages=[...]."
        )
    else:
        lines.append(
            "Fix the task's packages=[...] (each must be a requirement such as 'pandas>=2') and enqueue it again."
        )
    return "\n".join(lines)


# -- containers ----------------------------------------------------------------------------------------


def container_notice(script: Mapping) -> str | None:
    """A one-line notice when the task asks for a container, else None.

    script: the task's recorded definition; its `docker`, `docker_args` and `docker_bash_setup_script`
    entries are read. labpipe's workers never start containers: the worker logs the notice once per
    image and runs the task in its own environment; the notice says whether a runtime was even there.
    """
    image = script.get("docker")
    args = script.get("docker_args")
    setup = script.get("docker_bash_setup_script")
    if not (image or args or setup):
        return None
    if image:
        what = f"docker image {image}"
    else:
        named = [k for k, v in (("docker_args", args), ("docker_bash_setup_script", setup)) if v]
        what = f"docker settings ({', '.join(named)})"
    why = "labpipe does not start containers" if _container_runtime_usable() else "no container runtime here"
    return f"task requests {what}; {why}, running it in the local environment"


def _container_runtime_usable() -> bool:
    """A `docker` binary and a daemon socket that exists; stat calls only, no subprocess (runs per task)."""
    if shutil.which("docker") is None:
        return False
    host = os.environ.get("DOCKER_HOST", "")
    if host.startswith("unix://"):
        return Path(host.removeprefix("unix://")).exists()
    if host:  # tcp:// or ssh://: cannot be checked without connecting; trust the configuration
        return True
    sockets = list(_DOCKER_SOCKETS)
    if runtime_dir := os.environ.get("XDG_RUNTIME_DIR"):
        sockets.append(os.path.join(runtime_dir, "docker.sock"))  # rootless docker
    sockets.append(os.path.expanduser("~/.docker/run/docker.sock"))  # Docker Desktop
    return any(Path(s).exists() for s in sockets)
