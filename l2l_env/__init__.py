"""L2L environment package: data, priors, metrics and the pseudo-label selection environment.

Importing it registers ``l2l/PseudoLabel-v0`` (SynthRef) and ``l2l/PseudoLabel-RefCOCO-v0``, ``-RefCOCOplus-v0``,
``-RefCOCOg-v0`` with gymnasium; the ids also resolve as
``"l2l_env:l2l/PseudoLabel-v0"`` in a process that has not imported the package.
"""

from __future__ import annotations

__version__ = "0.1.0"

ENV_ID = "l2l/PseudoLabel-v0"
"""SynthRef, the built-in data set (every default of :class:`l2l_env.config.EnvConfig`)."""
ENV_IDS: dict[str, dict[str, str]] = {
    ENV_ID: {},
    "l2l/PseudoLabel-RefCOCO-v0": {"dataset": "refcoco"},
    "l2l/PseudoLabel-RefCOCOplus-v0": {"dataset": "refcoco+"},  # gymnasium ids cannot hold "+"
    "l2l/PseudoLabel-RefCOCOg-v0": {"dataset": "refcocog"},
}
"""Every registered id and the config keys it fixes; the RefCOCO ids need ``data_root=`` (the
refer layout) and usually a prior cache: ``prior_provider="cache", prior_options={"path": ...}``."""
REFCOCO_PLUS_ALIAS = "l2l/PseudoLabel-RefCOCO+-v0"
"""Found by ``gym.spec`` (an alias of ``l2l/PseudoLabel-RefCOCOplus-v0``)."""


def register_envs() -> None:
    """Register the L2L environments with gymnasium (idempotent)."""
    import gymnasium as gym

    # No passive env checker: after a reset that raises (a bad seed) gymnasium's checker fails
    # every later step with a TypeError of its own; the env checks its inputs itself, and
    # gymnasium's and SB3's check_env pass on it.
    for env_id, kwargs in ENV_IDS.items():
        if env_id not in gym.registry:
            gym.register(id=env_id, entry_point="l2l_env.env:PseudoLabelEnv", kwargs=dict(kwargs),
                         disable_env_checker=True)
    # The name as written, RefCOCO+, as an alias: gymnasium's id grammar has no "+", so
    # gym.spec("l2l/PseudoLabel-RefCOCO+-v0") finds the spec (make it with gym.make(spec)), while
    # gym.make takes the id string only as "l2l/PseudoLabel-RefCOCOplus-v0".
    gym.registry.setdefault(REFCOCO_PLUS_ALIAS, gym.registry["l2l/PseudoLabel-RefCOCOplus-v0"])


register_envs()
