"""Requirements: detecting a function's packages, parsing declared ones, checking them, container notices."""

from __future__ import annotations

from importlib import metadata

import pytest

from labpipe import requirements
from labpipe.errors import LabpipeError, RequirementsError
from labpipe.requirements import (
    check_requirements,
    container_notice,
    describe_missing,
    detect_packages,
    parse_requirements,
    version_warnings,
)

SKLEARN = metadata.version("scikit-learn")
PACKAGING = metadata.version("packaging")


# -- detect_packages ---------------------------------------------------------------------------------


def test_detect_maps_import_names_to_pinned_distribution_names():
    source = """
def train(df):
    from sklearn.linear_model import LogisticRegression
    import yaml
    return LogisticRegression()
"""
    assert detect_packages(source) == [f"PyYAML=={metadata.version('PyYAML')}", f"scikit-learn=={SKLEARN}"]


def test_detect_ignores_stdlib_labpipe_and_relative_imports():
    source = """
def step():
    import os, json
    from collections import OrderedDict
    import labpipe
    from labpipe.task import Task
    from . import sibling
    from .helpers import thing
    import packaging.version
"""
    assert detect_packages(source) == [f"packaging=={PACKAGING}"]


def test_detect_ignores_a_local_module_beside_the_script(tmp_path, monkeypatch):
    (tmp_path / "mylocalhelpers.py").write_text("X = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert detect_packages("def f():\n    import mylocalhelpers\n    return mylocalhelpers.X\n") == []


def test_detect_reads_an_indented_method_source():
    source = "    def method(self):\n        import sklearn\n"
    assert detect_packages(source) == [f"scikit-learn=={SKLEARN}"]


def test_detect_on_unparsable_source_names_the_line():
    with pytest.raises(RequirementsError, match="line 2"):
        detect_packages("def f():\n    import (\n")


# -- parse_requirements ---------------------------------------------------------------------------------


def test_parse_list_normalises_requirement_strings():
    assert parse_requirements(["numpy >= 1.0", "scikit-learn", "numpy>=1.0"]) == [
        "numpy>=1.0",
        "scikit-learn",
    ]


def test_parse_requirements_txt_skips_comments_blank_lines_and_pip_options(tmp_path):
    req = tmp_path / "requirements.txt"
    req.write_text(
        "# the model\n"
        "\n"
        "scikit-learn>=1.3  # inline comment\n"
        "-r other.txt\n"
        "--index-url https://example.invalid/simple\n"
        "-e .\n"
        "pandas>=2; python_version >= '3.8'\n"
        "torch \\\n"
        "  ==2.3.1\n"
    )
    assert parse_requirements(str(req)) == [
        "scikit-learn>=1.3",
        'pandas>=2; python_version >= "3.8"',
        "torch==2.3.1",
    ]
    # a path wrapped in a list (Task.create(packages="requirements.txt") stores it so) is read too
    assert parse_requirements([str(req)]) == parse_requirements(req)


def test_parse_bad_requirements_line_names_file_and_line(tmp_path):
    req = tmp_path / "requirements.txt"
    req.write_text("pandas\nscikit-learn >>> 1\n")
    with pytest.raises(LabpipeError, match=r"requirements\.txt:2: 'scikit-learn >>> 1'"):
        parse_requirements(str(req))


def test_parse_missing_requirements_file_names_the_path(tmp_path):
    with pytest.raises(RequirementsError, match="nope.txt"):
        parse_requirements(str(tmp_path / "nope.txt"))


# -- check_requirements ---------------------------------------------------------------------------------


def test_check_installed_requirements_are_ok():
    assert check_requirements(["scikit-learn>=1.0", "packaging", f"scikit-learn=={SKLEARN}"]) == []


def test_a_version_the_requirement_does_not_accept_is_a_warning_naming_both_not_a_problem():
    assert check_requirements(["scikit-learn>=99", "scikit-learn==1.2.2"]) == []
    assert version_warnings(["scikit-learn>=99", "scikit-learn==1.2.2", f"scikit-learn=={SKLEARN}"]) == [
        f"scikit-learn>=99 (installed: {SKLEARN})", f"scikit-learn==1.2.2 (installed: {SKLEARN})"]


def test_clearml_and_clearml_agent_count_as_provided_by_labpipe():
    assert check_requirements(["clearml>=1.14", "clearml-agent", "ClearML==1.0"]) == []
    assert version_warnings(["clearml>=1.14", "clearml_agent==1.9"]) == []


def test_check_reports_a_missing_package():
    assert check_requirements(["nonexistent-pkg-labpipe"]) == ["nonexistent-pkg-labpipe (not installed)"]


def test_check_skips_a_requirement_whose_marker_is_false():
    assert check_requirements(['nonexistent-pkg-labpipe; python_version < "3"']) == []


def test_check_answers_from_its_cache_on_a_second_call(monkeypatch):
    check_requirements(["scikit-learn>=99", "nonexistent-pkg-labpipe"])
    monkeypatch.setattr(requirements, "_check_one", lambda spec: pytest.fail("not cached"))
    assert check_requirements(["scikit-learn>=99", "nonexistent-pkg-labpipe"]) == ["nonexistent-pkg-labpipe (not installed)"]
    assert version_warnings(["scikit-learn>=99"]) == [f"scikit-learn>=99 (installed: {SKLEARN})"]


def test_describe_missing_lists_problems_and_the_pip_command():
    message = describe_missing(
        "train", [f"scikit-learn>=99 (installed: {SKLEARN})", "nope-pkg (not installed)"]
    )
    assert "'train'" in message
    assert f"scikit-learn>=99 (installed: {SKLEARN})" in message
    assert "pip install 'scikit-learn>=99' nope-pkg" in message


# -- container_notice -----------------------------------------------------------------------------------


def test_container_notice_when_no_runtime_is_usable(monkeypatch):
    monkeypatch.setattr(requirements.shutil, "which", lambda name: None)
    notice = container_notice({"docker": "nvidia/cuda:12.1", "docker_args": "--gpus all"})
    assert notice == (
        "task requests docker image nvidia/cuda:12.1; no container runtime here, running it in the local environment"
    )


def test_container_notice_is_none_without_docker_settings_and_says_containers_are_not_started(monkeypatch, tmp_path):
    assert container_notice({"kind": "function"}) is None
    sock = tmp_path / "docker.sock"
    sock.touch()
    monkeypatch.setattr(requirements.shutil, "which", lambda name: "/usr/bin/docker")
    monkeypatch.setenv("DOCKER_HOST", f"unix://{sock}")
    assert container_notice({"docker": "python:3.11"}) == (
        "task requests docker image python:3.11; labpipe does not start containers, running it in the local environment"
    )
    sock.unlink()
    assert "python:3.11" in container_notice({"docker": "python:3.11"})


def test_installed_distribution_scan_agrees_with_importlib_metadata():
    from labpipe.environment import _scan

    modules, versions = _scan()
    expected_versions = {}
    for dist in metadata.distributions():
        expected_versions.setdefault(dist.metadata["Name"], dist.version)
    assert versions == expected_versions
    for module, dists in metadata.packages_distributions().items():
        if "." in module or module == "__pycache__":  # not importable names (newer Pythons list them)
            continue
        assert modules.get(module) == list(dists), module
    assert modules["sklearn"] == ["scikit-learn"] and modules["numpy"] == ["numpy"]
