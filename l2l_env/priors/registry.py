"""Prior providers by name: ``simulated``, ``cache``, and the model providers (imported on first
use) ``mllm``, ``grounding_dino``, ``mm_grounding_dino`` and ``sam3``."""

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


def _grounding_dino(**kwargs: Any) -> PriorProvider:
    from l2l_env.priors.grounding_dino import GroundingDinoGrounder
    return GroundingDinoGrounder(family="grounding_dino", **kwargs)


def _mm_grounding_dino(**kwargs: Any) -> PriorProvider:
    from l2l_env.priors.grounding_dino import GroundingDinoGrounder
    return GroundingDinoGrounder(family="mm_grounding_dino", **kwargs)


def _sam3(**kwargs: Any) -> PriorProvider:
    from l2l_env.priors.sam3 import Sam3Grounder
    return Sam3Grounder(**kwargs)


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
    """How to build a provider, what of its kwargs determines its answers, and ``arg``: the kwarg
    that ``PROVIDER/ARG`` prior specs and ``l2l-priors`` fill (``preset``, ``path`` of a cache
    file, or ``model``, a local checkpoint folder)."""

    factory: Callable[..., PriorProvider]
    describe: Callable[[dict[str, Any]], dict[str, Any]] = _describe_kwargs
    arg: str = "model"


PROVIDERS: dict[str, ProviderSpec] = {
    "simulated": ProviderSpec(_simulated, _describe_simulated, arg="preset"),
    "mllm": ProviderSpec(_mllm),
    "grounding_dino": ProviderSpec(_grounding_dino),
    "mm_grounding_dino": ProviderSpec(_mm_grounding_dino),
    "sam3": ProviderSpec(_sam3),
    "cache": ProviderSpec(_cache, arg="path"),
}
MODEL_PROVIDERS = tuple(name for name, spec in PROVIDERS.items() if spec.arg == "model")
"""Providers that run a local checkpoint folder (``model=``)."""


def provider_spec(name: str) -> ProviderSpec:
    """The :class:`ProviderSpec` of ``name``; a clear error for an unknown name."""
    if name not in PROVIDERS:
        raise ValueError(f"unknown prior provider {name!r}; expected one of {sorted(PROVIDERS)}")
    return PROVIDERS[name]


def make_provider(name: str, **kwargs: Any) -> PriorProvider:
    """The provider ``name`` built with ``kwargs`` (see :data:`PROVIDERS`)."""
    return provider_spec(name).factory(**kwargs)


def provider_key(name: str, **kwargs: Any) -> str:
    """``NAME-HASH``: names a provider configuration in cache paths without building it."""
    described = provider_spec(name).describe(dict(kwargs))
    return f"{name}-{config_key({'provider': name, 'config': described})}"
