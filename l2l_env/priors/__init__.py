"""Multimodal priors: providers that ground a phrase (box/points/score), soft proposals, a cache.

* :func:`make_provider` builds a :class:`PriorProvider` by name: ``simulated`` (a calibrated
  stand-in MLLM for SynthRef, the default), the local-checkpoint providers (imported on first use)
  ``mllm`` (Qwen2/2.5/3-VL, Florence-2), ``grounding_dino``, ``mm_grounding_dino`` (open-set
  detectors) and ``sam3`` (mask priors), or ``cache`` (groundings read from a file by sample id).
  Every grounding carries its provider's confidence score.
* :func:`to_soft_proposal` / :func:`soft_proposals` turn groundings into HxW probability maps
  (``box``, ``gaussian``, a grounding's own ``mask``, or box-prompted ``sam`` / ``sam2``).
* :func:`load_priors` computes a split's priors once, caches them, returns a :class:`PriorTable`.
* ``l2l-priors`` (:mod:`l2l_env.priors.cli`) computes, shards, merges and reports on priors.
"""

from l2l_env.priors.base import NO_PRIOR, Grounding, PriorProvider, box_iou
from l2l_env.priors.cache import (CacheError, CachedPriors, MissingPriorError, compute_priors,
                                  merge_shards, read_priors)
from l2l_env.priors.proposals import (NO_PRIOR_VALUE, PROPOSALS, proposal_maps, soft_proposals,
                                      to_soft_proposal)
from l2l_env.priors.registry import PROVIDERS, make_provider, provider_key
from l2l_env.priors.simulated import MISTAKES_PRESET, PRESETS, SimPreset, SimulatedGrounder
from l2l_env.priors.table import PriorTable, load_mistake_priors, load_priors, priors_path

__all__ = [
    "CacheError", "CachedPriors", "Grounding", "MISTAKES_PRESET", "MissingPriorError", "NO_PRIOR",
    "NO_PRIOR_VALUE", "PRESETS", "PROPOSALS", "PROVIDERS", "PriorProvider", "PriorTable",
    "SimPreset", "SimulatedGrounder", "box_iou", "compute_priors", "load_mistake_priors",
    "load_priors", "make_provider", "merge_shards", "priors_path", "proposal_maps",
    "provider_key", "read_priors", "soft_proposals", "to_soft_proposal",
]
