"""The L2L constructor network: fully convolutional per-cell choice logits plus value heads.

Input: the observation's maps stacked as channels (``prior``, ``student``, ``teacher``,
``uncertainty``, optional ``image``; centred to ``[-1, 1]``) plus two coordinate channels, and a
conditioning vector (the phrase embedding ``text`` and the scalars ``no_prior``, ``progress``).
The conditioning vector modulates every block by FiLM (per-channel scale and shift), so the same
maps can be read differently for different phrases. Dilated residual blocks give a receptive
field of the whole 32x32 grid with four layers. Output: ``K`` logits per cell (the categorical
distribution over the cell's choices: ``K = 4`` for the ``construct`` action, ignore / background /
foreground / teacher; ``K = 2`` for ``select``, skip / keep), a per-cell value (the expected reward
share of the cell: the per-cell baseline) and a scalar state value from pooled features.

The network never sees the grid size in its weights: a trained selector runs at any grid.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from gymnasium import spaces
from torch import nn

from agents.obs import TEXT_KEY, map_keys, vector_keys


@dataclass(frozen=True)
class ObsLayout:
    """Which observation keys feed the network, and their sizes (saved with the weights)."""

    map_keys: tuple[str, ...]
    map_channels: tuple[int, ...]
    text_dim: int
    vector_keys: tuple[str, ...]
    vector_dims: tuple[int, ...]

    @classmethod
    def from_space(cls, space: spaces.Dict) -> ObsLayout:
        """Layout of the env's Dict observation space."""
        mk = map_keys(space.spaces)
        vk = vector_keys(space)
        text = space.spaces.get(TEXT_KEY)
        return cls(tuple(mk), tuple(int(space[k].shape[0]) for k in mk),
                   int(text.shape[0]) if text is not None else 0,
                   tuple(vk), tuple(int(np.prod(space[k].shape)) for k in vk))

    @classmethod
    def from_obs(cls, batch: Mapping[str, np.ndarray]) -> ObsLayout:
        """Layout of a batched observation (leading batch dim)."""
        mk = map_keys(batch)
        vk = vector_keys(batch, batched=True)
        return cls(tuple(mk), tuple(int(batch[k].shape[1]) for k in mk),
                   int(batch[TEXT_KEY].shape[1]) if TEXT_KEY in batch else 0,
                   tuple(vk), tuple(int(np.prod(batch[k].shape[1:])) for k in vk))

    @property
    def in_channels(self) -> int:
        return sum(self.map_channels)

    @property
    def cond_dim(self) -> int:
        return self.text_dim + sum(self.vector_dims)

    def tensors(self, batch: Mapping[str, np.ndarray], device: torch.device | str
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(maps (B, C, G, G), cond (B, D))`` float tensors of a batched observation."""
        missing = [k for k in (*self.map_keys, *self.vector_keys) if k not in batch]
        if self.text_dim and TEXT_KEY not in batch:
            missing.append(TEXT_KEY)
        if missing:
            raise ValueError(f"observation lacks keys {missing} the selector was built with; "
                             f"got {sorted(batch)}")
        maps = np.concatenate([np.asarray(batch[k], np.float32) for k in self.map_keys], axis=1)
        parts = ([np.asarray(batch[TEXT_KEY], np.float32).reshape(len(maps), -1)] if self.text_dim else [])
        parts += [np.asarray(batch[k], np.float32).reshape(len(maps), -1) for k in self.vector_keys]
        cond = np.concatenate(parts, axis=1) if parts else np.zeros((len(maps), 0), np.float32)
        if maps.shape[1] != self.in_channels or cond.shape[1] != self.cond_dim:
            raise ValueError(f"observation has {maps.shape[1]} map channels and {cond.shape[1]} "
                             f"conditioning features; the selector expects {self.in_channels} "
                             f"and {self.cond_dim} ({self})")
        return (torch.as_tensor(maps, device=device), torch.as_tensor(cond, device=device))


class FiLMBlock(nn.Module):
    """``x + relu(film(conv(x)))`` with a dilated 3x3 convolution."""

    def __init__(self, channels: int, cond_dim: int, dilation: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=dilation, dilation=dilation)
        self.norm = nn.GroupNorm(1, channels)
        self.film = nn.Linear(cond_dim, 2 * channels)
        nn.init.zeros_(self.film.weight)
        nn.init.zeros_(self.film.bias)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        gamma, beta = self.film(cond)[:, :, None, None].chunk(2, dim=1)
        return x + torch.relu(self.norm(self.conv(x)) * (1.0 + gamma) + beta)


class SelectorNet(nn.Module):
    """Per-cell selection logits and a state value.

    :param layout: observation keys and sizes.
    :param hidden: channels of the convolutional trunk.
    :param dilations: one residual FiLM block per entry.
    :param cond_hidden: width of the conditioning MLP (text + scalars).
    :param coord: append x/y coordinate channels (spatial phrases need them).
    :param init_probs: initial probability of each of the ``K`` choices of every cell (head bias);
        ``K = len(init_probs)``.
    """

    def __init__(self, layout: ObsLayout, hidden: int = 32, dilations: Sequence[int] = (1, 2, 4, 8),
                 cond_hidden: int = 64, coord: bool = True,
                 init_probs: Sequence[float] = (0.5, 0.5)) -> None:
        super().__init__()
        probs = np.asarray(init_probs, dtype=np.float64)
        if probs.ndim != 1 or len(probs) < 2 or (probs <= 0).any() or abs(probs.sum() - 1.0) > 1e-6:
            raise ValueError(f"init_probs must be >= 2 positive probabilities summing to 1, "
                             f"got {tuple(init_probs)}")
        self.n_choices = len(probs)
        self.layout = layout
        self.coord = coord
        in_ch = layout.in_channels + (2 if coord else 0)
        self.cond = nn.Sequential(nn.Linear(max(layout.cond_dim, 1), cond_hidden), nn.ReLU(),
                                  nn.Linear(cond_hidden, cond_hidden), nn.ReLU())
        self.stem = nn.Sequential(nn.Conv2d(in_ch, hidden, 3, padding=1), nn.ReLU())
        self.blocks = nn.ModuleList(FiLMBlock(hidden, cond_hidden, int(d)) for d in dilations)
        self.head = nn.Conv2d(hidden, self.n_choices, 1)
        nn.init.normal_(self.head.weight, std=0.01)
        with torch.no_grad():
            self.head.bias.copy_(torch.as_tensor(np.log(probs), dtype=torch.float32))
        self.value = nn.Sequential(nn.Linear(2 * hidden + cond_hidden, 64), nn.ReLU(), nn.Linear(64, 1))
        self.cell_value = nn.Conv2d(hidden, 1, 1)

    def forward(self, maps: torch.Tensor, cond: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(logits (B, G*G, K) row-major, value (B,), cell values (B, G*G))`` from
        ``maps (B, C, G, G)`` and ``cond (B, D)``. The cell values estimate each cell's expected
        immediate reward (times ``G*G``), the per-cell baseline."""
        b, _, h, w = maps.shape
        x = maps * 2.0 - 1.0
        if self.coord:
            ys = torch.linspace(-1.0, 1.0, h, device=maps.device, dtype=maps.dtype)
            xs = torch.linspace(-1.0, 1.0, w, device=maps.device, dtype=maps.dtype)
            grid = torch.stack(torch.meshgrid(ys, xs, indexing="ij"))[None].expand(b, -1, -1, -1)
            x = torch.cat([x, grid], dim=1)
        if cond.shape[1] == 0:
            cond = torch.zeros(b, 1, device=maps.device, dtype=maps.dtype)
        c = self.cond(cond)
        f = self.stem(x)
        for block in self.blocks:
            f = block(f, c)
        logits = self.head(f).reshape(b, self.n_choices, h * w).transpose(1, 2)
        pooled = torch.cat([f.mean(dim=(2, 3)), f.amax(dim=(2, 3)), c], dim=1)
        return logits, self.value(pooled).squeeze(1), self.cell_value(f).reshape(b, h * w)
