"""L2L environment package: data, priors, metrics and the pseudo-label selection environment.

Importing it registers ``l2l/PseudoLabel-v0`` with gymnasium; the id also resolves as
``"l2l_env:l2l/PseudoLabel-v0"`` in a process that has not imported the package.
"""

from __future__ import annotations

__version__ = "0.1.0"

ENV_ID = "l2l/PseudoLabel-v0"


def register_envs() -> None:
    """Register the L2L environments with gymnasium (idempotent)."""
    import gymnasium as gym

    if ENV_ID not in gym.registry:
        gym.register(id=ENV_ID, entry_point="l2l_env.env:PseudoLabelEnv",
                     disable_env_checker=False)


register_envs()
