"""Versions as ClearML counts them: datasets and pipelines without a version given get the next one."""

from __future__ import annotations

DEFAULT_VERSION = "1.0.0"


def next_version(version: str) -> str:
    """ClearML's rule: the last number of the last part that has one goes up (1.0.0 -> 1.0.1, 1.0.0rc1 -> 1.0.0rc2)."""
    from packaging.version import InvalidVersion, Version

    try:
        v = Version(version)
    except InvalidVersion:
        return version + ".1"
    release = ".".join(str(p) for p in v.release)
    epoch = f"{v.epoch}!" if v.epoch else ""
    if v.dev is not None:
        return f"{epoch}{release}{_pre(v.pre)}{'.post' + str(v.post) if v.post is not None else ''}.dev{v.dev + 1}"
    if v.post is not None:
        return f"{epoch}{release}{_pre(v.pre)}.post{v.post + 1}"
    if v.pre is not None:
        return f"{epoch}{release}{v.pre[0]}{v.pre[1] + 1}"
    return epoch + ".".join(str(p) for p in (*v.release[:-1], v.release[-1] + 1))


def _pre(pre: tuple[str, int] | None) -> str:
    return f"{pre[0]}{pre[1]}" if pre else ""


def version_key(version: str):
    """Sort key: valid versions by their order (1.10 after 1.9), after any that are not versions."""
    from packaging.version import InvalidVersion, Version

    try:
        return (1, Version(version))
    except InvalidVersion:
        return (0, version)
