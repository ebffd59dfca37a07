"""Running the `labpipe` command inside a test: `run("tasks", "--json")`.

click's CliRunner in this process (the test's store, no subprocess); exceptions are not caught, so a
bug shows its traceback. ok=True asserts exit status 0 and shows the output when it is not.
"""

from __future__ import annotations

from click.testing import CliRunner, Result

from labpipe.cli import main


def run(*args: str, ok: bool = True, env: dict[str, str] | None = None) -> Result:
    """Run `labpipe ARGS...`; with ok=True (the default) it must exit 0."""
    result = CliRunner().invoke(main, list(args), catch_exceptions=False, env=env)
    if ok:
        assert result.exit_code == 0, result.output
    return result
