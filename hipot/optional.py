"""Optional dependencies: import one, or say which extra installs it."""
from __future__ import annotations

from importlib import import_module
from types import ModuleType


class MissingDependency(ImportError):
    """An optional package is not installed; the message names the pip command that adds it."""


def require(module: str, extra: str, purpose: str = "") -> ModuleType:
    """`import module`, or raise MissingDependency naming `pip install 'hipot[extra]'`."""
    try:
        return import_module(module)
    except ImportError as e:
        what = f" for {purpose}" if purpose else ""
        raise MissingDependency(f"{module} is needed{what} but is not installed: pip install 'hipot[{extra}]' "
                                f"(from a checkout: pip install -e '.[{extra}]')") from e
