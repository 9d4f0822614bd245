"""`module:name` paths: how a recipe names its own reward function, advantage mode, judge backend or reward-input
provider (docs/architecture.md, "Registries"). One rule for all of them: the working directory is searched too, as
`python -m` would search it, so that a recipe can name a module that sits next to it whichever command runs it."""

from __future__ import annotations

import importlib
import os
import sys
from types import ModuleType
from typing import Any


def split_path(path: str) -> tuple[str, str]:
    """(module, name) of `module:name`, or of TRL's dotted form `module.name`; `ValueError` if either is missing.

    Example:

    ```python
    >>> split_path("my_rewards:bonus"), split_path("my_pkg.rewards.bonus")
    (('my_rewards', 'bonus'), ('my_pkg.rewards', 'bonus'))

    ```
    """
    module_name, sep, attribute = path.partition(":")
    if not sep:
        module_name, _, attribute = path.rpartition(".")
    if not module_name or not attribute:
        raise ValueError(f"Cannot read the path {path!r}: use 'module:name'.")
    return module_name, attribute


def import_module(module_name: str) -> ModuleType:
    """The module, searched for in the working directory too."""
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    return importlib.import_module(module_name)


def import_object(path: str) -> Any:
    """The object that `path` names; `ValueError`, `ImportError` or `AttributeError` when it cannot be had."""
    module_name, attribute = split_path(path)
    return getattr(import_module(module_name), attribute)
