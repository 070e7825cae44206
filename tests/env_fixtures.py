"""Small, fast configurations of the pseudo-label environment shared by the env tests."""

from __future__ import annotations

from conftest import TINY_SEGMENTER as _ARCH

TINY_SEGMENTER = {**_ARCH, "decoder_width": 8}
"""The shared tiny segmenter (``conftest.TINY_SEGMENTER``) with a narrower decoder."""


def tiny_env_kwargs(cache_dir, **overrides) -> dict:
    """gym.make kwargs of a tiny env: 200 SynthRef train sentences, grid 8, updates every 8 steps."""
    kwargs = dict(cache_dir=str(cache_dir), data_options={"num_train": 200, "num_eval": 20},
                  label_ratio=0.2, grid_size=8, update_interval=8, update_steps=1, labeled_batch=4,
                  episode_steps=24, probe_size=4, segmenter=dict(TINY_SEGMENTER))
    kwargs.update(overrides)
    return kwargs


def record_training(segmenter, keep) -> list:
    """Replace ``segmenter.train_step`` by one that appends ``keep(**batch)`` for every batch
    (``images``, ``priors``, ``phrases``, ``targets``, ``weights`` and any extra keyword such as
    ``objects``) to the returned list, then trains on it as usual."""
    seen: list = []
    real = segmenter.train_step

    def spy(images, priors, phrases, targets, weights=None, **extra):
        seen.append(keep(images=images, priors=priors, phrases=phrases, targets=targets,
                         weights=weights, **extra))
        return real(images, priors, phrases, targets, weights, **extra)

    segmenter.train_step = spy
    return seen
