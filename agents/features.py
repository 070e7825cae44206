"""A Stable-Baselines3 features extractor for the L2L env's Dict observation.

The spatial keys (``prior``, ``student``, ``teacher``, ``uncertainty``, optional ``image``) are
stacked as channels and read by a small CNN; the vector keys (``text``, ``no_prior``,
``progress``) go through an MLP; the two feature vectors are concatenated and projected to
``features_dim``. SB3's policy then maps this global vector to a flat per-cell head (4 choices per
cell under ``construct``, 2 under ``select``): that is the nature of the SB3 baseline (the ``l2l``
constructor is fully convolutional instead).
"""

from __future__ import annotations

import gymnasium as gym
import torch
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import nn

from agents.obs import TEXT_KEY, check_dict_space, map_keys, vector_keys


class MapFeaturesExtractor(BaseFeaturesExtractor):
    """CNN over the stacked maps + MLP over the vectors.

    :param observation_space: the env's ``spaces.Dict``.
    :param features_dim: output size.
    :param channels: CNN widths; each conv has stride 2 after the first.
    :param vector_hidden: MLP width for the vector keys.
    """

    def __init__(self, observation_space: gym.spaces.Dict, features_dim: int = 256,
                 channels: tuple[int, ...] = (32, 64, 64), vector_hidden: int = 64) -> None:
        space = check_dict_space(observation_space, "MapFeaturesExtractor")
        super().__init__(space, features_dim)
        self.map_keys = map_keys(space.spaces)
        self.vec_keys = ([TEXT_KEY] if TEXT_KEY in space.spaces else []) + vector_keys(space)
        in_ch = sum(int(space[k].shape[0]) for k in self.map_keys)
        layers: list[nn.Module] = []
        for i, ch in enumerate(channels):
            layers += [nn.Conv2d(in_ch, ch, 3, stride=1 if i == 0 else 2, padding=1), nn.ReLU()]
            in_ch = ch
        layers += [nn.AdaptiveAvgPool2d(4), nn.Flatten()]
        self.cnn = nn.Sequential(*layers)
        vec_dim = sum(int(torch.tensor(space[k].shape).prod()) for k in self.vec_keys)
        self.mlp = (nn.Sequential(nn.Linear(vec_dim, vector_hidden), nn.ReLU())
                    if vec_dim else None)
        self.proj = nn.Sequential(
            nn.Linear(in_ch * 16 + (vector_hidden if vec_dim else 0), features_dim), nn.ReLU())

    def forward(self, observations: dict[str, torch.Tensor]) -> torch.Tensor:
        maps = torch.cat([observations[k] for k in self.map_keys], dim=1)
        feats = [self.cnn(maps * 2.0 - 1.0)]
        if self.mlp is not None:
            vec = torch.cat([observations[k].flatten(1) for k in self.vec_keys], dim=1)
            feats.append(self.mlp(vec))
        return self.proj(torch.cat(feats, dim=1))
