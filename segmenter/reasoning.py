"""Phrase-conditioned global reasoning over the decoder's stride-4 features.

Convolutions see a neighbourhood; "the second square from the left", "the circle above the blue
star" and "the largest triangle" compare every object with every other. A
:class:`ReasoningLayer` treats each stride-4 position as a token that carries its x/y coordinates:
it first reads the phrase's words (cross-attention), then every other position (self-attention),
then a feed-forward step, each a pre-norm residual whose output projection starts at zero, so a
network with reasoning layers starts as the one without them.
"""

from __future__ import annotations

import torch
from torch import nn


class ReasoningLayer(nn.Module):
    """One cross-attention (to the words) + self-attention (across positions) + MLP block."""

    def __init__(self, width: int, text_dim: int, heads: int = 4) -> None:
        super().__init__()
        if width % heads:
            raise ValueError(f"reasoning width {width} must be divisible by {heads} heads")
        self.position = nn.Linear(2, width)
        self.norm_cross = nn.LayerNorm(width)
        self.cross = nn.MultiheadAttention(width, heads, kdim=text_dim, vdim=text_dim,
                                           batch_first=True)
        self.norm_self = nn.LayerNorm(width)
        self.self_attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.norm_mlp = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, 2 * width), nn.GELU(),
                                 nn.Linear(2 * width, width))
        for proj in (self.cross.out_proj, self.self_attn.out_proj, self.mlp[-1]):
            nn.init.zeros_(proj.weight)
            nn.init.zeros_(proj.bias)

    def forward(self, x: torch.Tensor, coords: torch.Tensor, words: torch.Tensor,
                mask: torch.Tensor) -> torch.Tensor:
        """``x`` (B, N, C) position tokens, ``coords`` (1, N, 2), ``words`` (B, T, D),
        ``mask`` (B, T) true at real tokens. Returns (B, N, C)."""
        pos = self.position(coords)
        h = self.norm_cross(x) + pos
        x = x + self.cross(h, words, words, key_padding_mask=~mask, need_weights=False)[0]
        h = self.norm_self(x) + pos
        x = x + self.self_attn(h, h, self.norm_self(x), need_weights=False)[0]
        return x + self.mlp(self.norm_mlp(x))


class Reasoner(nn.Module):
    """``layers`` :class:`ReasoningLayer` blocks applied to a (B, C, h, w) feature map."""

    def __init__(self, width: int, text_dim: int, layers: int, heads: int = 4) -> None:
        super().__init__()
        self.layers = nn.ModuleList(ReasoningLayer(width, text_dim, heads) for _ in range(layers))

    def forward(self, x: torch.Tensor, coords: torch.Tensor, words: torch.Tensor,
                mask: torch.Tensor) -> torch.Tensor:
        """``x`` (B, C, h, w), ``coords`` (1, 2, h, w) in [-1, 1]; returns (B, C, h, w)."""
        b, c, h, w = x.shape
        tokens = x.flatten(2).transpose(1, 2)
        where = coords.flatten(2).transpose(1, 2).to(tokens.dtype)
        for layer in self.layers:
            tokens = layer(tokens, where, words, mask)
        return tokens.transpose(1, 2).reshape(b, c, h, w)
