"""Agents and rewards from outside the package: modules imported before a run resolves its config.

A plugin is any module that registers with the decorators, e.g.::

    # my_agents.py

    @agents.register("mine")
    class Mine(agents.Agent): ...

    @register_reward("my-reward")
    class MyReward(Reward): ...

``l2l-run --import my_agents --agent mine env.reward='"my-reward"'`` then finds both. A module
name is looked up from the working directory first, as ``python -m`` does (``--import
examples.my_agent`` from the project root), then on the Python path. Installed packages can declare
modules under the entry point group ``l2l.plugins`` instead
(``[project.entry-points."l2l.plugins"] mine = "my_agents"``); they are imported by every run.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from importlib.metadata import entry_points

import agents
from l2l_env.rewards import Reward, register_reward

GROUP = "l2l.plugins"


def load(modules: Sequence[str] = ()) -> list[str]:
    """Import the entry points of :data:`GROUP` and ``modules``; returns the module names.
    Raises ``ValueError`` naming a module that cannot be imported."""
    names = [ep.value for ep in entry_points(group=GROUP)] + list(modules)
    with _working_directory_first():
        for name in names:
            try:
                importlib.import_module(name)
            except ImportError as err:
                raise ValueError(f"plugin module {name!r} cannot be imported ({err}); it must be "
                                 f"a module in the working directory {os.getcwd()} (dotted for a "
                                 "sub-folder: examples.my_agent) or on the Python path") from None
    return names


@contextmanager
def _working_directory_first() -> Iterator[None]:
    """The working directory at the front of ``sys.path`` while plugins are imported (a console
    script, unlike ``python -m``, does not put it there)."""
    cwd = os.getcwd()
    added = "" not in sys.path and cwd not in sys.path
    if added:
        sys.path.insert(0, cwd)
    try:
        yield
    finally:
        if added:
            sys.path.remove(cwd)
