"""The installed distribution: its name on PyPI (not the import name, which is ``winnow``) and version."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

DISTRIBUTION = "winnow-curate"  # `winnow` on PyPI is an unrelated project


def winnow_version() -> str:
    """The installed version of winnow, or ``unknown`` when it runs from an uninstalled tree."""
    try:
        return version(DISTRIBUTION)
    except PackageNotFoundError:
        return "unknown"
