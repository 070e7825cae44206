"""Observation helpers shared by every agent: batching, key roles, the grid size.

The env's observation is a dict of float32 arrays (see ``l2l_env.env``): maps are ``(C, G, G)``
(``prior``, ``student``, ``teacher``, ``uncertainty``, optional ``image``), vectors are ``(D,)``
(``text``, ``no_prior``, ``progress``). A vector env stacks them with a leading batch dimension.
Agents accept both forms; :func:`as_batch` turns either into the batched form and says which it was.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from gymnasium import spaces

from l2l_env import schema

MAP_KEYS: tuple[str, ...] = schema.MAP_KEYS + (schema.IMAGE_KEY,)
"""Spatial keys in their canonical channel order (missing ones are skipped)."""
TEXT_KEY = schema.TEXT_KEY
"""The phrase embedding."""
VECTOR_KEYS: tuple[str, ...] = schema.VECTOR_KEYS
"""Scalar side information in canonical order (other 1-D keys are appended, sorted)."""

Obs = Mapping[str, Any]


def as_batch(obs: Obs) -> tuple[dict[str, np.ndarray], bool]:
    """``(obs with a leading batch dim on every key, was_single)``.

    A single observation has ``prior`` of shape ``(1, G, G)``; a batched one ``(B, 1, G, G)``.
    Raises ``ValueError`` naming the key when ``prior`` is missing or has another rank.
    """
    if "prior" not in obs:
        raise ValueError(f"observation has no 'prior' key; got keys {sorted(obs)}")
    rank = np.ndim(obs["prior"])
    if rank == 3:
        return {k: np.asarray(v, dtype=np.float32)[None] for k, v in obs.items()}, True
    if rank == 4:
        return {k: np.asarray(v, dtype=np.float32) for k, v in obs.items()}, False
    raise ValueError(f"observation key 'prior' must have shape (1, G, G) or (B, 1, G, G), "
                     f"got {np.shape(obs['prior'])}")


def unbatch(action: np.ndarray, was_single: bool) -> np.ndarray:
    """Drop the batch dim of a ``(B, G*G)`` action when the observation was single."""
    return action[0] if was_single else action


def grid_size(obs: Obs) -> int:
    """G of a single or batched observation (the last dim of ``prior``)."""
    return int(np.shape(obs["prior"])[-1])


def map_keys(keys: Sequence[str] | Mapping[str, Any]) -> list[str]:
    """The spatial keys present, in canonical channel order."""
    return [k for k in MAP_KEYS if k in keys]


def vector_keys(space_or_obs: spaces.Dict | Mapping[str, Any], batched: bool = False) -> list[str]:
    """Scalar side-information keys present: canonical ones, then other 1-D keys sorted.

    ``text`` and the spatial keys are never included.
    """
    items = space_or_obs.spaces if isinstance(space_or_obs, spaces.Dict) else space_or_obs
    want_rank = 2 if batched else 1
    extra = sorted(k for k, v in items.items()
                   if k not in VECTOR_KEYS and k != TEXT_KEY and k not in MAP_KEYS
                   and len(v.shape if hasattr(v, "shape") else np.shape(v)) == want_rank)
    return [k for k in VECTOR_KEYS if k in items] + extra


def check_dict_space(space: spaces.Space, where: str) -> spaces.Dict:
    """The observation space as a ``spaces.Dict`` with at least ``prior`` and ``teacher``."""
    if not isinstance(space, spaces.Dict):
        raise ValueError(f"{where}: expected a Dict observation space (the L2L env's), got {space}")
    missing = [k for k in ("prior", "teacher") if k not in space.spaces]
    if missing:
        raise ValueError(f"{where}: observation space lacks keys {missing}; has {sorted(space.spaces)}")
    return space
