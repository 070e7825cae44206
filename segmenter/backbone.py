"""Hierarchical image encoders with four stages at strides 4, 8, 16 and 32.

An encoder exposes ``stem(x) -> (x, details)`` (``details``: ``{stride: features}`` at strides 1
and/or 2, used by the decoder's refinement, possibly empty) and ``stages``, a list of four modules
run one after the other, so that guidance can be injected between stages, or (a pretrained
``transformers`` backbone) ``features(x)``, the four stage outputs at once. ``channels`` gives each
stage's output channels, ``detail_channels`` the channels of each detail stride.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn


def conv_bn_relu(cin: int, cout: int, stride: int = 1, kernel: int = 3) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class BasicBlock(nn.Module):
    """A residual block of two 3x3 convolutions."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, 1, 1, bias=False), nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, 3, 1, 1, bias=False), nn.BatchNorm2d(channels))
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(x + self.body(x))


class CNNEncoder(nn.Module):
    """A compact CNN, trained from scratch: a stem to stride 2, then four down-sampling stages.

    With ``full_width > 0`` the stem starts with a full-resolution convolution whose output is
    kept as stride-1 detail for the decoder (small objects need full-resolution boundaries).
    """

    def __init__(self, in_channels: int, stem_width: int, widths: tuple[int, ...],
                 depths: tuple[int, ...], full_width: int = 0) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.channels = list(widths)
        if full_width > 0:
            self.full = conv_bn_relu(in_channels, full_width)
            self.down = conv_bn_relu(full_width, stem_width, stride=2)
            self.detail_channels = {1: full_width, 2: stem_width}
        else:
            self.full = None
            self.down = nn.Sequential(conv_bn_relu(in_channels, stem_width, stride=2),
                                      conv_bn_relu(stem_width, stem_width))
            self.detail_channels = {2: stem_width}
        stages = []
        cin = stem_width
        for width, depth in zip(widths, depths):
            stages.append(nn.Sequential(conv_bn_relu(cin, width, stride=2),
                                        *[BasicBlock(width) for _ in range(depth)]))
            cin = width
        self.stages = nn.ModuleList(stages)

    def stem(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
        details = {}
        if self.full is not None:
            x = self.full(x)
            details[1] = x
        x = self.down(x)
        details[2] = x
        return x, details


class TimmEncoder(nn.Module):
    """A timm backbone by name, split into four stages at strides 4, 8, 16, 32.

    ``timm`` is imported lazily (install the ``timm`` extra). ``weights`` is a local pretrained
    checkpoint (no download). Only timm feature extractors of the sequential kind
    (``FeatureListNet``, the default of CNNs such as ResNet, ConvNeXt, EfficientNet) can be split.
    """

    def __init__(self, name: str, weights: str | None = None) -> None:
        super().__init__()
        try:
            import timm
        except ImportError as err:
            raise ImportError(f"backbone 'timm:{name}' needs the timm package: "
                              f"pip install 'l2l[timm]' (or use backbone='cnn')") from err
        probe = timm.create_model(name, features_only=True, pretrained=False)
        reductions = list(probe.feature_info.reduction())
        wanted = []
        for stride in (4, 8, 16, 32):
            matches = [i for i, r in enumerate(reductions) if r == stride]
            if not matches:
                raise ValueError(f"timm backbone {name!r} has feature strides {reductions}; "
                                 f"need 4, 8, 16 and 32")
            wanted.append(matches[-1])
        kwargs = {}
        if weights is not None:
            kwargs = {"pretrained": True, "pretrained_cfg_overlay": {"file": str(weights)}}
        model = timm.create_model(name, features_only=True, out_indices=tuple(wanted), **kwargs)
        if not hasattr(model, "return_layers") or not hasattr(model, "items"):
            raise ValueError(f"timm backbone {name!r} is a {type(model).__name__}; only sequential "
                             f"feature extractors (FeatureListNet) can take per-stage guidance")
        if getattr(model, "output_fmt", "NCHW") not in ("NCHW", None) and \
                str(getattr(model, "output_fmt")) not in ("NCHW", "Format.NCHW"):
            raise ValueError(f"timm backbone {name!r} gives {model.output_fmt} features; need NCHW")
        stages, current = [], []
        for layer_name, module in model.items():
            current.append(module)
            if layer_name in model.return_layers:
                stages.append(nn.Sequential(*current))
                current = []
        self.in_channels = 3
        self.channels = list(model.feature_info.channels())
        self.detail_channels: dict[int, int] = {}
        self.stages = nn.ModuleList(stages)

    def stem(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
        return x, {}


class HFEncoder(nn.Module):
    """A ``transformers`` backbone (``AutoBackbone``: Swin, ConvNeXt, ResNet, ...) read from a local
    checkpoint folder, out of its four stages at strides 4, 8, 16 and 32.

    Pretrained stages cannot be re-entered one by one in general (Swin keeps its tokens as
    sequences between stages), so :meth:`features` runs the whole backbone and the segmenter guides
    each stage's output; a ``CNNEncoder`` instead takes the guidance between its stages.
    """

    STAGES = ("stage1", "stage2", "stage3", "stage4")

    def __init__(self, path: str) -> None:
        super().__init__()

        folder = Path(path)
        if not (folder / "config.json").is_file():
            raise FileNotFoundError(f"backbone 'hf:{path}': {folder / 'config.json'} does not exist "
                                    "(expected a local transformers checkpoint folder, e.g. written "
                                    "by save_pretrained)")
        from transformers import AutoConfig
        from transformers.models.auto.modeling_auto import MODEL_FOR_BACKBONE_MAPPING
        from transformers.utils import logging as hf_logging

        config = AutoConfig.from_pretrained(folder)
        if type(config) not in MODEL_FOR_BACKBONE_MAPPING:
            raise ValueError(f"backbone 'hf:{path}' is a {config.model_type!r} checkpoint, which "
                             "transformers cannot use as a backbone (AutoBackbone: Swin, ConvNeXt, "
                             "ResNet, ...)")
        cls = MODEL_FOR_BACKBONE_MAPPING[type(config)]
        verbosity = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()  # the load report lists the new per-stage norms
        try:
            model, info = cls.from_pretrained(folder, out_features=list(self.STAGES),
                                              output_loading_info=True)
        finally:
            hf_logging.set_verbosity(verbosity)
        missing = [k for k in info["missing_keys"] if not k.startswith("hidden_states_norms.")]
        if missing:
            raise ValueError(f"backbone 'hf:{path}': the checkpoint lacks {len(missing)} weights of "
                             f"{cls.__name__} (e.g. {sorted(missing)[:3]})")
        strides = list(getattr(model, "_out_feature_strides", None) or [])
        self.model = model
        self.in_channels = 3
        self.channels = list(model.channels)
        self.detail_channels: dict[int, int] = {}
        self.strides = strides

    def stem(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
        return x, {}

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The four stage outputs ``(B, C_i, H / s_i, W / s_i)``, ``s_i`` = 4, 8, 16, 32."""
        return list(self.model(pixel_values=x).feature_maps)


def build_encoder(backbone: str, in_channels: int, stem_width: int, widths: tuple[int, ...],
                  depths: tuple[int, ...], weights: str | None = None,
                  full_width: int = 0) -> nn.Module:
    """``"cnn"`` -> :class:`CNNEncoder`; ``"hf:<folder>"`` -> :class:`HFEncoder`;
    ``"timm:<name>"`` -> :class:`TimmEncoder` (the optional ``timm`` extra)."""
    if backbone == "cnn":
        return CNNEncoder(in_channels, stem_width, widths, depths, full_width)
    if backbone.startswith("hf:"):
        return HFEncoder(backbone.split(":", 1)[1])
    if backbone.startswith("timm:"):
        return TimmEncoder(backbone.split(":", 1)[1], weights=weights)
    raise ValueError(f"unknown backbone {backbone!r}; expected 'cnn', 'hf:<checkpoint folder>' or "
                     "'timm:<model name>'")
