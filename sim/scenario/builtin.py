"""The shipped scenarios, usable by name from anywhere.

``scenarios/`` is installed as the data package ``sim.builtin`` (in an
editable install or a checkout, the folder itself is used), so
``dgsim run`` with no file runs the default scenario and ``dgsim run
edge-cloud`` finds the shipped file wherever dgsim is installed.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Optional

DEFAULT = "video-analytics-64"


def _folder():
    """The installed data package, or the checkout's scenarios/ (editable installs)."""
    try:
        return resources.files("sim.builtin")
    except ModuleNotFoundError:
        return Path(__file__).resolve().parents[2] / "scenarios"


def builtin_names() -> list[str]:
    folder = _folder()
    if not folder.is_dir():
        return []
    return sorted(p.name.removesuffix(".yaml") for p in folder.iterdir() if p.name.endswith(".yaml"))


def scenario_path(argument: Optional[str]) -> Path:
    """A scenario file path from a CLI argument: a path, a shipped name, or None for the default."""
    if argument is not None and (Path(argument).exists() or argument.endswith((".yaml", ".yml"))):
        return Path(argument)
    name = argument or DEFAULT
    if name in builtin_names():
        return Path(str(_folder() / f"{name}.yaml"))
    return Path(argument or f"{DEFAULT}.yaml")
