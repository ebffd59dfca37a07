"""`python -m labpipe.agent`: the processes of the agent package that start as fresh interpreters.

    python -m labpipe.agent [--queue NAME ...] [--workers N] ...   a daemon, as `labpipe agent ...`
    python -m labpipe.agent worker CONFIG_JSON OWNER_PID           one pool worker (agent/spawned.py starts it)

One entry point for both, so the command line of every agent process names the same module. The
daemon takes no positional arguments, so a first argument `worker` cannot be mistaken for an option.
"""

from __future__ import annotations

import sys

WORKER = "worker"


def main(argv: list[str] | None = None) -> None:
    """Run the daemon (the `labpipe agent` command's options) or, after `worker`, one pool worker."""
    args = sys.argv[1:] if argv is None else list(argv)
    if args[:1] == [WORKER]:
        from .spawned import serve_as_worker

        serve_as_worker(args[1:])
        return
    from .commands import agent_command

    agent_command(args, prog_name="python -m labpipe.agent")


if __name__ == "__main__":
    main()
