"""Guidance: the soft prior and the phrase's tokens turned into per-stage conditioning signals.

:class:`GuidanceBlock` runs after each encoder stage and adds a residual to its features:

* **prior-aware pixel-word attention** -- each pixel queries the words (its query sees the pixel's
  features, its x/y coordinates and the prior), giving a per-pixel language feature; its product
  with the visual features is the multimodal signal (token level, so spatial words can act);
* **learned prior trust** -- the visual features pooled under the prior are compared with the
  sentence feature; a sigmoid of that agreement scales the prior before it is embedded, so the
  network can learn *when* to rely on the prior (it can turn down a prior on the wrong object);
* **spatial context** (``spatial_context`` maps) -- the multimodal signal is read out as a few
  phrase-conditioned "match" maps, and :func:`directional_context` tells every pixel what matches
  lie to its left, right, above and below (is there any, and what share of the matched mass):
  the comparisons behind "leftmost", "third from the top" and "above the blue star", which a
  convolution sees only locally.

:class:`FiLMBlock` is the plain baseline used when guidance is switched off: the mean-pooled
sentence feature scales and shifts the channels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def masked_mean(tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``tokens`` (B, T, C) over the positions where ``mask`` (B, T) is true."""
    m = mask.to(tokens.dtype).unsqueeze(-1)
    return (tokens * m).sum(1) / m.sum(1).clamp_min(1.0)


def directional_context(maps: torch.Tensor) -> torch.Tensor:
    """For (B, K, h, w) maps in [0, 1]: per pixel and direction (left, right, up, down), the
    largest value strictly on that side along its row/column, and the share of the map's mass
    there. Returns (B, 8K, h, w)."""
    out = []
    for dim in (3, 2):  # along x (left / right), then along y (up / down)
        n = maps.shape[dim]
        total = maps.sum(dim, keepdim=True).clamp_min(1e-6)
        for flip in (False, True):
            m = maps.flip(dim) if flip else maps
            # exclusive prefix: shift by one so a pixel never sees itself
            shifted = torch.cat([torch.zeros_like(m.narrow(dim, 0, 1)), m.narrow(dim, 0, n - 1)],
                                dim)
            peak = torch.cummax(shifted, dim).values
            share = shifted.cumsum(dim) / total
            if flip:
                peak, share = peak.flip(dim), share.flip(dim)
            out += [peak, share]
    return torch.cat(out, 1)


class GuidanceBlock(nn.Module):
    """Per-stage guidance from the prior map and the text tokens (see the module docstring)."""

    def __init__(self, channels: int, text_dim: int, *, use_text: bool, use_prior: bool,
                 coord_channels: bool = True, spatial_context: int = 0) -> None:
        super().__init__()
        self.use_text = use_text
        self.spatial_context = spatial_context if use_text else 0
        self.use_prior = use_prior
        self.coord_channels = coord_channels
        c = channels
        parts = [c]  # inputs of the fusion conv
        if use_text:
            extra = (2 if coord_channels else 0) + (1 if use_prior else 0)
            self.query = nn.Conv2d(c + extra, c, 1)
            self.key = nn.Linear(text_dim, c)
            self.value = nn.Linear(text_dim, c)
            self.visual = nn.Conv2d(c, c, 1)
            parts.append(c)
        if self.spatial_context:
            k = self.spatial_context
            self.match = nn.Conv2d(c, k, 1)
            self.context = nn.Sequential(nn.Conv2d(9 * k, c, 1), nn.ReLU(inplace=True))
            parts.append(c)
        if use_prior:
            self.trust = nn.Sequential(nn.Linear(3 * c if use_text else c, c),
                                       nn.ReLU(inplace=True), nn.Linear(c, 1))
            self.prior_embed = nn.Sequential(nn.Conv2d(2, c, 3, 1, 1), nn.ReLU(inplace=True))
            parts.append(c)
        self.fuse = nn.Sequential(nn.Conv2d(sum(parts), c, 1, bias=False), nn.BatchNorm2d(c),
                                  nn.ReLU(inplace=True), nn.Conv2d(c, c, 3, 1, 1, bias=False),
                                  nn.BatchNorm2d(c))
        nn.init.zeros_(self.fuse[-1].weight)  # start as identity: guidance is learned, not wired in
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor, words: torch.Tensor | None, mask: torch.Tensor | None,
                prior: torch.Tensor | None, coords: torch.Tensor,
                trust_out: list[torch.Tensor] | None = None) -> torch.Tensor:
        """``x`` (B, C, h, w), ``words`` (B, T, text_dim), ``mask`` (B, T),
        ``prior`` (B, 1, h, w), ``coords`` (1, 2, h, w); the learned prior trust (B,) is appended
        to ``trust_out`` when one is given."""
        b, c, h, w = x.shape
        parts = [x]
        sentence = None
        if self.use_text:
            q_in = [x]
            if self.coord_channels:
                q_in.append(coords.expand(b, -1, -1, -1))
            if self.use_prior:
                q_in.append(prior)
            q = self.query(torch.cat(q_in, 1)).flatten(2).transpose(1, 2)  # B, hw, C
            k = self.key(words)  # B, T, C
            v = self.value(words)
            logits = torch.bmm(q, k.transpose(1, 2)) / c ** 0.5
            logits = logits.masked_fill(~mask.unsqueeze(1), torch.finfo(logits.dtype).min)
            lang = torch.bmm(logits.softmax(-1), v).transpose(1, 2).reshape(b, c, h, w)
            multimodal = self.visual(x) * lang
            parts.append(multimodal)
            sentence = masked_mean(v, mask)
            if self.spatial_context:
                match = torch.sigmoid(self.match(multimodal))
                parts.append(self.context(torch.cat([match, directional_context(match)], 1)))
        if self.use_prior:
            mass = prior.flatten(1).sum(1, keepdim=True).clamp_min(1e-3)
            pooled = (x * prior).flatten(2).sum(2) / mass  # B, C: what the prior points at
            feats = pooled if sentence is None else \
                torch.cat([pooled, sentence, pooled * sentence], 1)
            trust = torch.sigmoid(self.trust(feats)).view(b, 1, 1, 1)
            if trust_out is not None:
                trust_out.append(trust.view(b))
            parts.append(self.prior_embed(torch.cat([prior, prior * trust], 1)))
        return self.act(x + self.fuse(torch.cat(parts, 1)))


class FiLMBlock(nn.Module):
    """Baseline conditioning: channel scale and shift from the mean-pooled sentence feature."""

    def __init__(self, channels: int, text_dim: int) -> None:
        super().__init__()
        self.film = nn.Linear(text_dim, 2 * channels)
        nn.init.zeros_(self.film.weight)
        nn.init.zeros_(self.film.bias)

    def forward(self, x: torch.Tensor, words: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        gamma, beta = self.film(masked_mean(words, mask)).chunk(2, dim=1)
        return F.relu(x * (1 + gamma[..., None, None]) + beta[..., None, None])
