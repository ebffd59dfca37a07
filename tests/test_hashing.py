"""Tests for labpipe.hashing, .fingerprint and .source: golden keys, canonical fingerprints, local modules."""

from __future__ import annotations

import ast
import collections
import dataclasses
import enum
import json
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from labpipe.errors import Unfingerprintable
from labpipe.hashing import (
    args_key,
    cache_key,
    code_key,
    fingerprint,
    hash_bytes,
    local_module_sources,
    new_hasher,
    normalize_source,
    task_step_key,
)

REPO = Path(__file__).resolve().parents[1]

SOURCE = '''
@PipelineDecorator.component(return_values=["total"], cache=True)
def add(a, b=2):
    """Add two numbers."""
    import math  # used below
    return math.fsum([a, b])
'''
HELPER = "def double(x):\n    return 2 * x\n"
SETTINGS = {"return_values": ["total"], "packages": ["numpy>=1.24"], "docker": None}


def _golden_frame() -> pd.DataFrame:
    # Explicit dtypes everywhere: the golden value pins our encoding, not pandas' dtype inference.
    frame = pd.DataFrame(
        {"x": np.array([1, 2, 3], dtype="<i8"), "y": pd.Series(["a", "b", "c"], dtype=object)}
    )
    frame.columns = pd.Index(["x", "y"], dtype=object)
    return frame


# ------------------------------------------------------------------------------------- golden values
# Computed once and pinned. If one of these fails, every user's cache would be invalidated by the
# change: make it only on purpose (and bump the key version tag in hashing.py).


def test_hash_bytes_golden_value_is_xxh3_128_hex():
    assert hash_bytes(b"labpipe") == "4174f2b26e9e91a7e6393b2dbbb8df4e"


def test_hash_bytes_streams_parts_like_their_concatenation():
    assert hash_bytes(b"lab", bytearray(b"pi"), memoryview(b"pe")) == hash_bytes(b"labpipe")
    h = new_hasher()
    for chunk in (b"lab", b"pipe"):
        h.update(chunk)
    assert h.hexdigest() == hash_bytes(b"labpipe")
    strided = memoryview(b"l-a-b")[::2]
    assert hash_bytes(strided) == hash_bytes(b"lab")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(42, "d2b5bdb4152e6cb48597552434065fa1", id="int"),
        pytest.param(1.5, "80634fc0e370a6ade8710497aecba0ff", id="float"),
        pytest.param("héllo", "8c3a894493edaac35424d9990f859c54", id="str"),
        pytest.param(b"labpipe", "cbbed51deab02514c16ca67c89a8f4bb", id="bytes"),
        pytest.param(bytearray(b"labpipe"), "7f0a4c3ed8ea2af64ab2b2156cb18cdc", id="bytearray"),
        pytest.param({"b": [1, 2], "a": None}, "c8b8d96503457a634b126cc5d21349e2", id="dict"),
        pytest.param([1, [2.0, ["x", (3, None)]]], "54b1ca56ee72b3f635c13587ae32a41b", id="nested-list"),
        pytest.param(
            np.arange(6, dtype="<i8").reshape(2, 3), "1ce0cfb9e97cc68f46283b67f4ea0d4c", id="ndarray"
        ),
        pytest.param(_golden_frame(), "a507ce3211daaf37148c1f41ca210caf", id="dataframe"),
    ],
)
def test_fingerprint_golden_values_do_not_drift(value, expected):
    assert fingerprint(value) == expected


def test_code_args_and_cache_key_golden_values_do_not_drift():
    code = code_key(SOURCE, [HELPER], {"helpers": "X = 1"}, SETTINGS)
    args = args_key({"a": 1, "b": 2.5})
    assert code == "42d2ea2c57d5c3c0fceaadb057cf3038"
    assert args == "f30b7c64e28f28e0a8cc0d65e16d966b"
    assert cache_key(code, args) == "4c7bf2b2b6e199b1fa0cd2443722ed46"


def test_task_step_key_golden_value_does_not_drift():
    script = {"kind": "script", "entry_point": "train.py", "working_dir": ".", "diff": ""}
    params = {"General/lr": 0.1, "General/epochs": 3}
    assert task_step_key(script, params, {"cfg": {"a": 1}}, {"name": "n"}, "training") == "962a45cbd7daa076fd6d879ff12d66e4"
    # every part counts
    assert task_step_key(script, dict(params, **{"General/lr": 0.2}), {"cfg": {"a": 1}}, {"name": "n"}, "training") != \
        "962a45cbd7daa076fd6d879ff12d66e4"
    assert task_step_key(script, params, {"cfg": {"a": 1}}, {"name": "n"}, "testing") != "962a45cbd7daa076fd6d879ff12d66e4"


# ---------------------------------------------------------------------------------------- code_key


def test_comments_docstrings_and_formatting_do_not_change_code_key():
    reformatted = """
        def add(a,  b = 2):
            # a comment that says nothing new

            import math
            return math.fsum( [a,b] )   # trailing comment
    """
    assert code_key(reformatted, [HELPER], {"helpers": "X = 1"}, SETTINGS) == code_key(
        SOURCE, [HELPER], {"helpers": "X = 1"}, SETTINGS
    )


def test_component_decorator_does_not_change_code_key_settings_do():
    undecorated = SOURCE.replace('@PipelineDecorator.component(return_values=["total"], cache=True)\n', "")
    assert code_key(undecorated, settings=SETTINGS) == code_key(SOURCE, settings=SETTINGS)
    assert code_key(SOURCE, settings={**SETTINGS, "docker": "python:3.11"}) != code_key(
        SOURCE, settings=SETTINGS
    )


def test_changed_constant_changes_code_key():
    assert code_key(SOURCE.replace("b=2", "b=3")) != code_key(SOURCE)
    assert code_key(SOURCE, [HELPER]) != code_key(SOURCE, [HELPER.replace("2 * x", "3 * x")])


def test_helper_order_does_not_change_code_key():
    other = "def triple(x):\n    return 3 * x\n"
    assert code_key(SOURCE, [HELPER, other]) == code_key(SOURCE, [other, HELPER])


def test_unparseable_source_is_unfingerprintable():
    with pytest.raises(Unfingerprintable, match="does not parse"):
        code_key("def broken(:\n    pass\n")


def test_normalize_source_handles_indented_source_with_unindented_string():
    method = '    def f(self):\n        x = """\nat column 0\n"""\n        return x\n'
    assert normalize_source(method) == "def f(self):\n    x = '\\nat column 0\\n'\n    return x"


def test_docstring_only_body_normalizes_to_pass():
    assert normalize_source('def f():\n    "only a docstring"\n') == "def f():\n    pass"


# ------------------------------------------------------------------------------------- fingerprint


def test_dict_insertion_order_does_not_change_fingerprint():
    assert fingerprint({"a": 1, "b": [1, 2], 3: "c"}) == fingerprint({3: "c", "b": [1, 2], "a": 1})
    assert fingerprint({"a": 1, "b": 2}) != fingerprint({"a": 2, "b": 1})


def test_set_order_does_not_change_fingerprint():
    assert fingerprint({"x", "y", 1}) == fingerprint({1, "y", "x"})
    assert fingerprint({1, 2}) != fingerprint(frozenset({1, 2}))


def test_one_float_one_and_true_fingerprint_differently():
    assert (
        len({fingerprint(1), fingerprint(1.0), fingerprint(True), fingerprint("1"), fingerprint(np.int64(1))})
        == 5
    )


def test_list_and_tuple_fingerprint_differently():
    assert fingerprint([1, 2]) != fingerprint((1, 2))
    assert fingerprint([[1, 23]]) != fingerprint([[12, 3]])


def test_numpy_dtype_shape_and_values_change_fingerprint():
    a = np.arange(6, dtype="<i8")
    assert fingerprint(a) != fingerprint(a.astype("<i4"))
    assert fingerprint(a) != fingerprint(a.reshape(2, 3))
    assert fingerprint(a) != fingerprint(a + 1)


def test_numpy_view_fingerprints_like_its_contiguous_copy():
    a = np.arange(12.0).reshape(3, 4)
    assert fingerprint(a.T) == fingerprint(np.ascontiguousarray(a.T))


def test_numpy_object_array_is_fingerprinted_by_elements():
    assert fingerprint(np.array(["a", 1], dtype=object)) == fingerprint(np.array(["a", 1], dtype=object))
    with pytest.raises(Unfingerprintable, match="_thread.lock"):
        fingerprint(np.array([threading.Lock()], dtype=object))


def test_dataframe_columns_index_and_dtypes_change_fingerprint():
    frame = _golden_frame()
    assert fingerprint(frame) == fingerprint(_golden_frame())
    assert fingerprint(frame) != fingerprint(frame[["y", "x"]])
    assert fingerprint(frame) != fingerprint(frame.astype({"x": "<f8"}))
    assert fingerprint(frame) != fingerprint(frame.set_axis([10, 11, 12]))
    assert fingerprint(frame["x"]) != fingerprint(frame["x"].rename("z"))


def test_path_enum_dataclass_and_namedtuple_fingerprint_by_value():
    class Color(enum.Enum):
        RED = 1
        BLUE = 2

    @dataclasses.dataclass
    class Config:
        lr: float
        layers: list

    Point = collections.namedtuple("Point", "x y")
    assert fingerprint(Path("data/iris.pkl")) == fingerprint(Path("data") / "iris.pkl")
    assert fingerprint(Path("a")) != fingerprint("a")
    assert fingerprint(Color.RED) != fingerprint(Color.BLUE)
    assert fingerprint(Config(0.1, [1, 2])) == fingerprint(Config(0.1, [1, 2]))
    assert fingerprint(Config(0.1, [1, 2])) != fingerprint(Config(0.2, [1, 2]))
    assert fingerprint(Point(1, 2)) != fingerprint((1, 2))


def test_closures_made_by_one_factory_differ_by_captured_value():
    def scale_by(k):
        def scale(x):
            return x * k

        return scale

    assert fingerprint(scale_by(2)) == fingerprint(scale_by(2))
    assert fingerprint(scale_by(2)) != fingerprint(scale_by(3))


def test_object_with_labpipe_fingerprint_is_used_without_resolving_it():
    class Proxy:
        def __getattr__(self, name):
            raise AssertionError("the proxy was resolved")

        def __labpipe_fingerprint__(self):
            return "artifact:0123abcd"

    assert fingerprint(Proxy()) == fingerprint(Proxy())
    assert args_key({"df": Proxy()}) == fingerprint({"df": Proxy()})


def test_args_key_equals_fingerprint_of_kwargs_and_ignores_order():
    assert args_key({"a": 1, "b": [2]}) == args_key({"b": [2], "a": 1}) == fingerprint({"a": 1, "b": [2]})


def test_unfingerprintable_object_raises_with_its_type_name():
    class Opaque:
        pass

    with pytest.raises(Unfingerprintable, match=r"Opaque.*not be cached"):
        fingerprint(Opaque())
    with pytest.raises(Unfingerprintable, match="generator"):
        fingerprint(x for x in range(3))
    with pytest.raises(Unfingerprintable, match=r"_thread.lock at \['cfg'\]\[1\]"):
        fingerprint({"cfg": [1, threading.Lock()]})


def test_args_key_names_the_argument_that_cannot_be_fingerprinted():
    with open(os.devnull) as handle, pytest.raises(Unfingerprintable) as info:
        args_key({"n": 3, "log": handle})
    assert str(info.value).startswith(
        "argument 'log' of type _io.TextIOWrapper has no stable fingerprint; this call is not cached"
    )


def test_self_referencing_containers_raise_unfingerprintable():
    loop = [1]
    loop.append(loop)
    with pytest.raises(Unfingerprintable, match="contains itself"):
        fingerprint(loop)
    mapping: dict = {}
    mapping["self"] = [mapping]
    with pytest.raises(Unfingerprintable, match="contains itself"):
        fingerprint(mapping)


def test_shared_but_acyclic_references_are_fine():
    shared = [1, 2]
    assert fingerprint([shared, shared]) == fingerprint([[1, 2], [1, 2]])


def test_deep_nesting_raises_unfingerprintable_not_recursion_error():
    deep: list = []
    for _ in range(sys.getrecursionlimit() + 100):
        deep = [deep]
    with pytest.raises(Unfingerprintable, match="nested too deeply"):
        fingerprint(deep)


# ------------------------------------------------------------------------------ across processes

_CHILD = """
import json, numpy as np
from labpipe.hashing import fingerprint
print(json.dumps([fingerprint(v) for v in (
    {"tags": {"alpha", "beta", "gamma"}, "n": 3, "w": [0.5, None]},
    np.linspace(0.0, 1.0, 7).reshape(7, 1),
)]))
"""


def test_another_process_with_another_hash_seed_computes_the_same_fingerprints():
    env = {**os.environ, "PYTHONHASHSEED": "12345", "PYTHONPATH": str(REPO)}
    out = subprocess.run(
        [sys.executable, "-c", _CHILD], capture_output=True, text=True, env=env, cwd=REPO, check=True
    )
    expected = [
        fingerprint({"w": [0.5, None], "n": 3, "tags": {"gamma", "beta", "alpha"}}),
        fingerprint(np.linspace(0.0, 1.0, 7).reshape(7, 1)),
    ]
    assert json.loads(out.stdout) == expected


# Lowest first: each may import only the ones before it, so there is no import cycle among them.
HASHING_MODULES = [
    "labpipe.source",
    "labpipe.fingerprint.encoding",
    "labpipe.fingerprint.callables",
    "labpipe.fingerprint.arrays",
    "labpipe.fingerprint.core",
    "labpipe.fingerprint",
    "labpipe.hashing",
]


def _module_file(module: str) -> Path:
    path = REPO / module.replace(".", "/")
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def test_every_fingerprint_module_is_in_the_hashing_layer_order():
    package = REPO / "labpipe" / "fingerprint"
    assert {_module_file(m) for m in HASHING_MODULES} >= set(package.glob("*.py"))


@pytest.mark.parametrize("position", range(len(HASHING_MODULES)), ids=HASHING_MODULES)
def test_hashing_modules_import_only_stdlib_xxhash_errors_and_lower_hashing_modules(position):
    module = HASHING_MODULES[position]
    lower = set(HASHING_MODULES[:position])
    tree = ast.parse(_module_file(module).read_text())
    for node in tree.body:
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module]
        else:
            continue
        for name in names:
            top = name.partition(".")[0]
            assert (
                top in sys.stdlib_module_names or top == "xxhash" or name == "labpipe.errors" or name in lower
            ), name


def test_hashing_re_exports_fingerprint_and_source_functions():
    import labpipe.fingerprint
    import labpipe.hashing
    import labpipe.source

    assert labpipe.hashing.fingerprint is labpipe.fingerprint.fingerprint
    assert labpipe.hashing.normalize_source is labpipe.source.normalize_source
    assert labpipe.hashing.local_module_sources is labpipe.source.local_module_sources


def test_fingerprinting_plain_data_does_not_import_numpy_or_pandas():
    child = textwrap.dedent("""
        import sys
        import labpipe.hashing as h
        before = {m for m in ("numpy", "pandas") if m in sys.modules}
        h.fingerprint({"a": [1, 2.0, "x"], "b": {3}})
        h.code_key("def f():\\n    return 1\\n", settings={"k": 1})
        print(sorted({m for m in ("numpy", "pandas") if m in sys.modules} - before))
    """)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run(
        [sys.executable, "-c", child], capture_output=True, text=True, env=env, cwd=REPO, check=True
    )
    assert out.stdout.strip() == "[]"


# --------------------------------------------------------------------------------- local modules

COMPONENT = """
def step(a):
    import os
    import numpy
    from helpers import helper
    return helper(a)
"""


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A pipeline script folder: helpers.py imports consts.py and a package; one file is a library's."""
    _write(
        tmp_path / "helpers.py",
        '''
        import consts
        from pkg import sub


        def helper(x):
            """Scale x."""
            return x * consts.K  # the factor lives in consts
    ''',
    )
    _write(tmp_path / "consts.py", "K = 3\n")
    _write(tmp_path / "pkg" / "__init__.py", "from . import sub\n")
    _write(tmp_path / "pkg" / "sub.py", "import json\nY = 1\n")
    _write(tmp_path / "unused.py", "Z = 0\n")
    return tmp_path


def test_local_module_sources_follows_sibling_imports_and_ignores_stdlib_and_site_packages(project):
    sources = local_module_sources(COMPONENT, project)
    assert list(sources) == ["consts", "helpers", "pkg", "pkg.sub"]
    assert sources["consts"] == "K = 3"
    assert "Scale x" not in sources["helpers"] and "factor lives" not in sources["helpers"]


def test_local_module_sources_skips_a_file_that_lives_in_site_packages(project, tmp_path_factory):
    library = tmp_path_factory.mktemp("venv") / "lib" / "site-packages" / "vendored.py"
    _write(library, "V = 1\n")
    (project / "vendored.py").symlink_to(library)
    component = "def step():\n    import vendored\n    import helpers\n"
    assert "vendored" not in local_module_sources(component, project)
    assert "helpers" in local_module_sources(component, project)


def test_local_module_sources_counts_a_project_file_that_shadows_a_stdlib_name(project):
    # The script's folder comes first on sys.path, so its statistics.py is what the step imports.
    _write(project / "statistics.py", "def mean(xs):\n    return 0\n")
    assert "statistics" in local_module_sources("def step():\n    import statistics\n", project)


def test_editing_a_sibling_module_changes_code_key_and_a_comment_does_not(project):
    def key() -> str:
        return code_key(COMPONENT, local_modules=local_module_sources(COMPONENT, project))

    before = key()
    _write(project / "consts.py", "K = 3  # a comment only\n")
    assert key() == before
    _write(project / "consts.py", "K = 4\n")
    assert key() != before


def test_find_local_modules_reads_helpers_and_searches_the_folders_in_sys_path_order(project, tmp_path_factory):
    from labpipe.source import file_stamps, find_local_modules

    # A component in comps/ whose helper imports `helpers`, which sits in the script's folder (project);
    # comps/ comes first, so its own consts.py shadows the script folder's, and the package `pkg` found
    # in comps/ owns its submodules even though only the script folder has pkg/sub.py.
    comps = tmp_path_factory.mktemp("comps")
    _write(comps / "consts.py", "K = 5\n")
    _write(comps / "pkg" / "__init__.py", "")
    component = "def step(a):\n    return helper(a)\n"
    helper = "def helper(a):\n    import helpers\n    import consts\n    return helpers.helper(a)\n"
    found = find_local_modules([component, helper], [comps, project])
    assert list(found.sources) == ["consts", "helpers", "pkg"]
    assert found.sources["consts"] == "K = 5"
    assert str(comps / "consts.py") in found.watched and str(project / "helpers.py") in found.watched
    assert {str(comps), str(project)} <= set(found.watched)  # a module added to either shows as a change
    assert file_stamps(found.watched) == found.stamps
    assert find_local_modules([component], [comps, project]).sources == {}  # the component alone imports none
