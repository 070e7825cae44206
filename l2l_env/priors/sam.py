"""The ``sam`` and ``sam2`` soft proposals: a SAM or SAM 2 mask prompted by the grounding's box.

:class:`SamProposer` (``SamModel`` + ``SamProcessor``) and :class:`Sam2Proposer` (``Sam2Model`` +
``Sam2Processor``) load a local checkpoint folder (never the hub). For a grounding with a box
each returns the sigmoid of the mask logits the model rates best (highest predicted IoU of its
multimask outputs), brought to the requested ``(H, W)`` by the processor's own
``post_process_masks``; for a grounding without a box, the flat uninformative map
(:data:`NO_PRIOR_VALUE`). The SAM 2 processor needs ``torchvision``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from l2l_env.priors.base import Grounding
from l2l_env.priors.checkpoints import checkpoint_family, to_pil
from l2l_env.priors.proposals import NO_PRIOR_VALUE


class SamProposer:
    """SAM, prompted by a box, as a soft-proposal function.

    :param model_path: local folder of a transformers SAM checkpoint (``SamModel`` weights and a
        ``SamProcessor`` config), e.g. a saved ``facebook/sam-vit-base``.
    :param device: torch device for the model.
    :param multimask: let SAM propose several masks and keep the one with the best predicted IoU
        (recommended for a single box prompt); ``False`` keeps SAM's single mask.
    """

    kind = "sam"
    model_type = "sam"
    classes = ("SamModel", "SamProcessor")

    def __init__(self, model_path: str | Path, device: str = "cpu", multimask: bool = True) -> None:
        import transformers

        path = Path(model_path).expanduser()
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"{type(self).__name__} checkpoint folder {str(path)!r} has "
                                    "no config.json (pass a local path; models are never "
                                    "downloaded)")
        supported = {p.kind: p.model_type for p in PROPOSERS.values()}
        found = checkpoint_family(path, f"proposal kind {self.kind!r}", supported)
        if found != self.kind:
            raise ValueError(f"{path}: a {found} checkpoint; use proposal kind {found!r}, not "
                             f"{self.kind!r}")
        self.path = path.resolve()
        self.device = torch.device(device)
        self.multimask = bool(multimask)
        model_class, processor_class = (getattr(transformers, c) for c in self.classes)
        self.processor = processor_class.from_pretrained(self.path)
        self.model = model_class.from_pretrained(self.path).to(self.device).eval()

    def __call__(self, image: np.ndarray, grounding: Grounding, height: int,
                 width: int) -> np.ndarray:
        """The ``(height, width)`` float32 probability map of the referent in ``image``."""
        return self.propose([image], [grounding], height, width)[0]

    def propose(self, images: Sequence[np.ndarray], groundings: Sequence[Grounding], height: int,
                width: int) -> np.ndarray:
        """``(N, height, width)`` float32 maps, one forward pass for all boxed groundings.

        A grounding's box is in pixels of its ``image_size`` when set (scaled to the image's
        size here), else of the image itself.
        """
        if len(images) != len(groundings):
            raise ValueError(f"got {len(images)} images but {len(groundings)} groundings")
        out = np.full((len(images), height, width), NO_PRIOR_VALUE, dtype=np.float32)
        todo = [i for i, g in enumerate(groundings) if not g.no_prior]
        if not todo:
            return out
        pil = [to_pil(images[i]) for i in todo]
        boxes = [[_corner_box(groundings[i], pil_im.height, pil_im.width)]
                 for i, pil_im in zip(todo, pil)]
        inputs = self.processor(images=pil, input_boxes=boxes, return_tensors="pt")
        with torch.inference_mode():
            pred = self.model(pixel_values=inputs["pixel_values"].to(self.device),
                              input_boxes=inputs["input_boxes"].to(self.device),
                              multimask_output=self.multimask)
        # pred_masks: (B, 1 box, M masks, h, w) low-res logits; iou_scores: (B, 1, M).
        best = pred.iou_scores[:, 0].argmax(dim=-1)
        logits = pred.pred_masks[torch.arange(len(todo)), 0, best].float().cpu()  # (B, h, w)
        maps = self.upsample(list(logits[:, None, None]), inputs, height, width)
        out[todo] = torch.sigmoid(torch.cat(maps)[:, 0]).numpy()
        return out

    def upsample(self, logits: list[torch.Tensor], inputs: Any, height: int,
                 width: int) -> list[torch.Tensor]:
        """Low-res mask logits ``(1, 1, h, w)`` each -> ``(1, 1, height, width)`` each."""
        return self.processor.image_processor.post_process_masks(
            logits, [(height, width)] * len(logits), inputs["reshaped_input_sizes"],
            binarize=False)


class Sam2Proposer(SamProposer):
    """SAM 2, prompted by a box, as a soft-proposal function (same parameters as
    :class:`SamProposer`; the checkpoint holds ``Sam2Model`` weights and a ``Sam2Processor``
    config, e.g. a saved ``facebook/sam2.1-hiera-tiny``)."""

    kind = "sam2"
    model_type = "sam2"
    classes = ("Sam2Model", "Sam2Processor")

    def upsample(self, logits: list[torch.Tensor], inputs: Any, height: int,
                 width: int) -> list[torch.Tensor]:
        # SAM 2 resizes the whole image to its input square (no padding to crop away).
        return self.processor.post_process_masks(logits, [(height, width)] * len(logits),
                                                 binarize=False)


PROPOSERS: dict[str, type[SamProposer]] = {"sam": SamProposer, "sam2": Sam2Proposer}
"""Box-prompted proposers by proposal kind."""


def _corner_box(grounding: Grounding, height: int, width: int) -> list[float]:
    """The grounding's ``(x, y, w, h)`` as ``[x1, y1, x2, y2]`` in pixels of a HxW image."""
    x, y, w, h = grounding.box  # type: ignore[misc]
    sy, sx = 1.0, 1.0
    if grounding.image_size is not None:
        sy, sx = height / grounding.image_size[0], width / grounding.image_size[1]
    return [x * sx, y * sy, (x + w) * sx, (y + h) * sy]
