"""Agents and rewards from outside the package: modules imported before a run resolves its config.

A plugin is any module that registers with the decorators, e.g.::

    # my_agents.py
    import agents
    from l2l_env.rewards import Reward, register_reward

    @agents.register("mine")
    class Mine(agents.Agent): ...

    @register_reward("my-reward")
    class MyReward(Reward): ...

``l2l-run --import my_agents --agent mine env.reward='"my-reward"'`` then finds both. Installed
packages can declare modules under the entry point group ``l2l.plugins`` instead
(``[project.entry-points."l2l.plugins"] mine = "my_agents"``); they are imported by every run.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from importlib.metadata import entry_points

GROUP = "l2l.plugins"


def load(modules: Sequence[str] = ()) -> list[str]:
    """Import the entry points of :data:`GROUP` and ``modules``; returns the module names.
    Raises ``ValueError`` naming a module that cannot be imported."""
    names = [ep.value for ep in entry_points(group=GROUP)] + list(modules)
    for name in names:
        try:
            importlib.import_module(name)
        except ImportError as err:
            raise ValueError(f"plugin module {name!r} cannot be imported ({err}); it must be on "
                             "the Python path (e.g. the working directory)") from None
    return names
