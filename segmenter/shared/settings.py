"""The settings every config of L2L shares, written once: the run's seed and device. The
configs of the segmenter, the env, the agents and the run inherit them."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Seeded:
    """``seed``: the seed of every random stream the config's owner draws from."""

    seed: int = 0


@dataclass
class Runtime(Seeded):
    """``seed`` and ``device`` (``cpu``, ``cuda``, ``cuda:1``, ``mps``)."""

    device: str = "cpu"
