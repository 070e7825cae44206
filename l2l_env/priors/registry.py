"""Prior providers by name: ``simulated``, ``mllm`` (imported on first use) and ``cache``."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from l2l_env.data.cache import config_key
from l2l_env.priors.base import PriorProvider

RUNTIME_ONLY = frozenset({"device", "batch_size", "progress", "num_workers", "strict"})
"""Provider kwargs that change how fast, not what, a provider answers (left out of cache keys)."""


def _simulated(**kwargs: Any) -> PriorProvider:
    from l2l_env.priors.simulated import SimulatedGrounder
    return SimulatedGrounder(**kwargs)


def _mllm(**kwargs: Any) -> PriorProvider:
    from l2l_env.priors.mllm import MLLMGrounder
    return MLLMGrounder(**kwargs)


def _cache(**kwargs: Any) -> PriorProvider:
    from l2l_env.priors.cache import CachedPriors
    return CachedPriors(**kwargs)


def _describe_simulated(kwargs: dict[str, Any]) -> dict[str, Any]:
    kwargs = {k: v for k, v in kwargs.items() if k not in RUNTIME_ONLY}
    return _simulated(**kwargs).config()  # cheap: resolves the preset's numbers


def _describe_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in kwargs.items() if k not in RUNTIME_ONLY and v is not None}
    for key in ("model", "path"):
        if isinstance(out.get(key), (str, os.PathLike)) and os.path.exists(out[key]):
            out[key] = os.path.abspath(out[key])
    return out


@dataclass(frozen=True)
class ProviderSpec:
    """How to build a provider, and what of its kwargs determines its answers."""

    factory: Callable[..., PriorProvider]
    describe: Callable[[dict[str, Any]], dict[str, Any]] = _describe_kwargs


PROVIDERS: dict[str, ProviderSpec] = {
    "simulated": ProviderSpec(_simulated, _describe_simulated),
    "mllm": ProviderSpec(_mllm),
    "cache": ProviderSpec(_cache),
}


def _spec(name: str) -> ProviderSpec:
    if name not in PROVIDERS:
        raise ValueError(f"unknown prior provider {name!r}; expected one of {sorted(PROVIDERS)}")
    return PROVIDERS[name]


def make_provider(name: str, **kwargs: Any) -> PriorProvider:
    """The provider ``name`` built with ``kwargs`` (see :data:`PROVIDERS`)."""
    return _spec(name).factory(**kwargs)


def provider_key(name: str, **kwargs: Any) -> str:
    """``NAME-HASH``: names a provider configuration in cache paths without building it."""
    return f"{name}-{config_key({'provider': name, 'config': _spec(name).describe(dict(kwargs))})}"
