"""The guided hierarchical segmentation network: encoder, per-stage guidance, top-down decoder,
phrase-conditioned reasoning across positions, object-attribute heads."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from segmenter.backbone import build_encoder, conv_bn_relu
from segmenter.config import SegmenterConfig
from segmenter.guidance import FiLMBlock, GuidanceBlock, masked_mean
from segmenter.reasoning import Reasoner


def coordinate_grid(h: int, w: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """(1, 2, h, w) normalised x and y coordinates in [-1, 1]."""
    ys = torch.linspace(-1.0, 1.0, h, device=device, dtype=dtype)
    xs = torch.linspace(-1.0, 1.0, w, device=device, dtype=dtype)
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([gx, gy]).unsqueeze(0)


class TopDownDecoder(nn.Module):
    """FPN-style top-down path from stride 32 to stride 4, then refinement steps to strides 2 and
    1 with the stem's detail features (down to ``refine_stride``, where details exist); the
    logits are upsampled (bilinear) to the input size."""

    def __init__(self, channels: list[int], width: int, detail_channels: dict[int, int],
                 refine_stride: int) -> None:
        super().__init__()
        self.width = width
        self.lateral = nn.ModuleList(nn.Conv2d(c, width, 1) for c in channels)
        self.smooth = nn.ModuleList(conv_bn_relu(width, width) for _ in channels[:-1])
        self.refine_strides = [s for s in (2, 1) if s >= refine_stride and s in detail_channels]
        self.reduce = nn.ModuleDict()
        self.fuse = nn.ModuleDict()
        cin = width
        for stride in self.refine_strides:
            fine = max(8, width // (3 if stride == 2 else 6))
            self.reduce[str(stride)] = nn.Conv2d(cin, fine, 1)
            self.fuse[str(stride)] = conv_bn_relu(fine + detail_channels[stride], fine)
            cin = fine
        self.head = nn.Conv2d(cin, 1, 1)

    def top_down(self, feats: list[torch.Tensor]) -> torch.Tensor:
        """The top-down features at stride 4 (``width`` channels)."""
        x = self.lateral[-1](feats[-1])
        for i in range(len(feats) - 2, -1, -1):
            lat = self.lateral[i](feats[i])
            x = F.interpolate(x, size=lat.shape[-2:], mode="bilinear", align_corners=False) + lat
            x = self.smooth[i](x)
        return x

    def refine(self, x: torch.Tensor, details: dict[int, torch.Tensor]) -> torch.Tensor:
        """The stride-4 features refined with the stem's details: the head's input."""
        for stride in self.refine_strides:
            detail = details[stride]
            x = F.interpolate(self.reduce[str(stride)](x), size=detail.shape[-2:], mode="bilinear",
                              align_corners=False)
            x = self.fuse[str(stride)](torch.cat([x, detail], 1))
        return x

    def logits(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """The 1x1 head on the decoder's last features, upsampled to ``size``."""
        logits = self.head(x)
        if logits.shape[-2:] != size:
            logits = F.interpolate(logits, size=size, mode="bilinear", align_corners=False)
        return logits


class GuidedSegNet(nn.Module):
    """Image + soft prior + text tokens -> foreground logits (B, 1, H, W).

    With ``use_guidance`` every encoder stage is followed by a :class:`GuidanceBlock`; without it
    the prior is an extra input channel and the text FiLM-modulates each stage (the baseline).
    The decoder's stride-4 features feed the object-attribute heads, then the reasoning layers
    (:class:`segmenter.reasoning.Reasoner`, ``reason_layers`` > 0), then the refinement.
    ``use_prior`` / ``use_text`` remove the prior / the text from the forward pass entirely.
    """

    def __init__(self, config: SegmenterConfig, text_in_dim: int) -> None:
        super().__init__()
        cfg = config
        self.use_prior, self.use_text = cfg.use_prior, cfg.use_text
        self.use_guidance = cfg.use_guidance
        self.channels_last = cfg.channels_last
        self.coord_channels = cfg.coord_channels
        is_cnn = cfg.backbone == "cnn"
        if not is_cnn and not cfg.use_guidance and cfg.use_prior:
            raise ValueError("use_guidance=False feeds the prior as an input channel, which needs "
                             "backbone='cnn'; got backbone=" + repr(cfg.backbone))
        in_ch = 3
        if is_cnn and cfg.coord_channels:
            in_ch += 2
        if is_cnn and not cfg.use_guidance and cfg.use_prior:
            in_ch += 1
        self.encoder = build_encoder(cfg.backbone, in_ch, cfg.stem_width, cfg.widths, cfg.depths,
                                     cfg.backbone_weights,
                                     cfg.full_width if cfg.refine_stride == 1 else 0)
        channels = self.encoder.channels
        self.register_buffer("pixel_mean", torch.tensor(cfg.pixel_mean).view(1, 3, 1, 1),
                             persistent=False)
        self.register_buffer("pixel_std", torch.tensor(cfg.pixel_std).view(1, 3, 1, 1),
                             persistent=False)
        if cfg.use_text:
            self.text_proj = nn.Sequential(nn.LayerNorm(text_in_dim),
                                           nn.Linear(text_in_dim, cfg.text_dim), nn.GELU())
        self.word_buckets = cfg.word_buckets if cfg.use_text else 0
        if self.word_buckets:  # which word it is, learned: contextual features blur "left"/"right"
            self.word_embed = nn.Embedding(self.word_buckets, cfg.text_dim)
            nn.init.normal_(self.word_embed.weight, std=0.02)
        if cfg.use_guidance:
            self.guides = nn.ModuleList(
                GuidanceBlock(c, cfg.text_dim, use_text=cfg.use_text, use_prior=cfg.use_prior,
                              coord_channels=cfg.coord_channels,
                              spatial_context=cfg.spatial_context) for c in channels)
        elif cfg.use_text:
            self.films = nn.ModuleList(FiLMBlock(c, cfg.text_dim) for c in channels)
        self.decoder = TopDownDecoder(channels, cfg.decoder_width, self.encoder.detail_channels,
                                      cfg.refine_stride)
        # per-pixel classifiers of every object's attributes (0 = background): auxiliary targets
        # from the labeled images' object annotations, so the features learn what phrases name
        self.object_heads = nn.ModuleList(nn.Conv2d(self.decoder.width, k + 1, 1)
                                          for k in cfg.object_classes)
        self.reasoner = (Reasoner(self.decoder.width, cfg.text_dim, cfg.reason_layers)
                         if cfg.reason_layers and cfg.use_text else None)
        self.reason_pool = cfg.reason_stride // 4  # the decoder's top-down path ends at stride 4
        self.text_head = cfg.text_head and cfg.use_text
        if self.text_head:  # the phrase's own 1x1 kernel over the decoder's last features
            self.kernel = nn.Linear(cfg.text_dim, self.decoder.width + 1)
            nn.init.zeros_(self.kernel.weight)
            nn.init.zeros_(self.kernel.bias)

    def forward(self, images: torch.Tensor, priors: torch.Tensor, tokens: torch.Tensor | None,
                mask: torch.Tensor | None, trust_out: list[torch.Tensor] | None = None,
                object_out: list[torch.Tensor] | None = None, ids: torch.Tensor | None = None
                ) -> torch.Tensor:
        """``images`` (B, 3, H, W) in [0, 1]; ``priors`` (B, 1, H, W); ``tokens`` (B, T, D);
        ``ids`` (B, T) the tokens' ids (needed when ``word_buckets`` > 0).
        ``trust_out`` collects each guided stage's learned prior trust (B,); ``object_out`` the
        logits (B, k + 1, h, w) of each object-attribute head."""
        b, _, h, w = images.shape
        x = (images - self.pixel_mean) / self.pixel_std
        coords = coordinate_grid(h, w, x.device, x.dtype)
        inputs = [x]
        if self.encoder.in_channels > 3 and self.coord_channels:
            inputs.append(coords.expand(b, -1, -1, -1))
        if self.use_prior and not self.use_guidance and self.encoder.in_channels > 3:
            inputs.append(priors)
        x = torch.cat(inputs, 1)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        x, details = self.encoder.stem(x)
        words = self.text_proj(tokens) if self.use_text else None
        if self.word_buckets:
            if ids is None or ids.shape != tokens.shape[:2]:
                raise ValueError(f"word_buckets > 0 needs token ids shaped like the tokens "
                                 f"{tuple(tokens.shape[:2])}, got "
                                 f"{None if ids is None else tuple(ids.shape)}")
            words = words + self.word_embed(ids % self.word_buckets)
        feats = []
        if hasattr(self.encoder, "stages"):  # guidance between the stages
            for i, stage in enumerate(self.encoder.stages):
                x = self.guide(i, stage(x), words, mask, priors, coords, trust_out)
                feats.append(x)
        else:  # a pretrained backbone runs whole; each stage's output is guided
            feats = [self.guide(i, f, words, mask, priors, coords, trust_out)
                     for i, f in enumerate(self.encoder.features(x))]
        coarse = self.decoder.top_down(feats)
        if object_out is not None:
            object_out.extend(head(coarse) for head in self.object_heads)
        if self.reasoner is not None:  # compare positions across the image, given the phrase
            coarse = self.reason(coarse, coords, words, mask)
        fine = self.decoder.refine(coarse, details)
        logits = self.decoder.logits(fine, (h, w))
        if self.text_head:  # the phrase's own 1x1 kernel over the stride-4 features
            kernel = self.kernel(masked_mean(words, mask))  # B, C + 1
            dynamic = torch.einsum("bchw,bc->bhw", coarse, kernel[:, :-1]) \
                + kernel[:, -1, None, None]
            dynamic = dynamic.unsqueeze(1) / coarse.shape[1] ** 0.5
            if dynamic.shape[-2:] != (h, w):
                dynamic = F.interpolate(dynamic, size=(h, w), mode="bilinear", align_corners=False)
            logits = logits + dynamic
        return logits

    def reason(self, coarse: torch.Tensor, coords: torch.Tensor, words: torch.Tensor,
               mask: torch.Tensor) -> torch.Tensor:
        """The stride-4 features after the reasoning layers (run on a grid pooled by
        ``reason_pool``; what they add is upsampled back as a residual)."""
        grid = F.avg_pool2d(coarse, self.reason_pool) if self.reason_pool > 1 else coarse
        where = F.adaptive_avg_pool2d(coords, grid.shape[-2:])
        update = self.reasoner(grid, where, words, mask) - grid
        if update.shape[-2:] != coarse.shape[-2:]:
            update = F.interpolate(update, size=coarse.shape[-2:], mode="bilinear",
                                   align_corners=False)
        return coarse + update

    def guide(self, i: int, x: torch.Tensor, words: torch.Tensor | None, mask: torch.Tensor | None,
              priors: torch.Tensor, coords: torch.Tensor,
              trust_out: list[torch.Tensor] | None = None) -> torch.Tensor:
        """Stage ``i``'s features conditioned on the prior, the phrase and the coordinates."""
        if self.use_guidance:
            size = x.shape[-2:]
            prior_i = F.adaptive_avg_pool2d(priors, size) if self.use_prior else None
            coords_i = F.adaptive_avg_pool2d(coords, size)
            return self.guides[i](x, words, mask, prior_i, coords_i, trust_out)
        if self.use_text:
            return self.films[i](x, words, mask)
        return x
