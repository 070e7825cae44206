"""The ``sam3`` prior provider: SAM 3 segments the phrase itself, a mask prior without a box prompt.

:class:`Sam3Grounder` loads ``Sam3Model`` + ``Sam3Processor`` from a local folder. The phrase is
SAM 3's text prompt; the processor's ``post_process_object_detection`` scores every query (its
detection probability times the image-level presence probability), the best-scored query is the
referent, and ``post_process_instance_segmentation`` gives its binary mask at the image's size.
The grounding carries that mask (COCO RLE, :attr:`Grounding.mask`), its bounding box and the
score; proposal kind ``mask`` renders it. A best score under ``threshold`` (default 0: never), or
an empty mask, gives no prior. The SAM 3 processor needs ``torchvision``.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
from PIL import Image

from l2l_env.priors.base import Grounding, encode_mask, mask_box
from l2l_env.priors.checkpoints import LocalModelGrounder, checkpoint_family, checkpoint_folder

_QUERY_FIELDS = ("pred_logits", "pred_boxes", "pred_masks")


class Sam3Grounder(LocalModelGrounder):
    """Segments phrases with a local SAM 3 checkpoint, in batches.

    :param model: local checkpoint folder (``config.json``, weights, tokenizer, processor), e.g. a
        saved ``facebook/sam3``.
    :param device: torch device. :param batch_size: image-phrase pairs per forward pass.
    :param threshold: best scores below it give no prior (0: always the best mask).
    :param mask_threshold: probability above which a pixel is in the mask.
    :param dtype: model dtype (see :func:`l2l_env.priors.checkpoints.resolve_dtype`).
    """

    name = "sam3"

    def __init__(self, model: str | Path, device: str = "cpu", batch_size: int = 8,
                 threshold: float = 0.0, mask_threshold: float = 0.5,
                 dtype: str | torch.dtype | None = None) -> None:
        import transformers

        self.path = checkpoint_folder(model, "SAM 3")
        checkpoint_family(self.path, "the sam3 provider", {"sam3": "sam3"})
        if batch_size < 1 or not 0.0 <= threshold <= 1.0 or not 0.0 < mask_threshold < 1.0:
            raise ValueError(f"batch_size must be >= 1, threshold in [0, 1] and mask_threshold "
                             f"in (0, 1), got {batch_size}, {threshold}, {mask_threshold}")
        self.batch_size = int(batch_size)
        self.threshold = float(threshold)
        self.mask_threshold = float(mask_threshold)
        self.processor = transformers.Sam3Processor.from_pretrained(self.path)
        self.load_model(transformers.Sam3Model, dtype, device)

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "model": str(self.path), "threshold": self.threshold,
                "mask_threshold": self.mask_threshold}

    def ground_chunk(self, images: list[Image.Image], phrases: list[str]) -> list[Grounding]:
        inputs = self.processor(images=images, text=phrases, return_tensors="pt")
        inputs.pop("original_sizes", None)
        inputs = {k: v.to(self.device) for k, v in inputs.items()}
        inputs["pixel_values"] = inputs["pixel_values"].to(self.dtype)
        with torch.inference_mode():
            outputs = self.model(**inputs)
        detections = self.processor.post_process_object_detection(outputs, threshold=-1.0)
        best = torch.stack([d["scores"].argmax() for d in detections])
        sizes = [(im.height, im.width) for im in images]
        picked = self.processor.post_process_instance_segmentation(
            _best_queries(outputs, best), threshold=-1.0, mask_threshold=self.mask_threshold,
            target_sizes=sizes)
        return [self._grounding(r, size) for r, size in zip(picked, sizes)]

    def _grounding(self, result: dict[str, Any], size: tuple[int, int]) -> Grounding:
        """One image's best query (its mask, the mask's box, the score) as a grounding."""
        score = round(float(result["scores"][0]), 4)
        mask = result["masks"][0].bool().cpu().numpy()
        box = mask_box(mask)
        if score < self.threshold or box is None:
            why = "empty mask" if box is None else f"best score {score} < {self.threshold}"
            return Grounding(box=None, score=0.0, raw=f"{self.name}: {why}", image_size=size)
        return Grounding(box=box, score=score, raw=self.name, image_size=size,
                         mask=encode_mask(mask))


def _best_queries(outputs: Any, best: torch.Tensor) -> SimpleNamespace:
    """``outputs`` reduced to query ``best[i]`` of each image (masks are post-processed for
    the chosen query only)."""
    rows = torch.arange(len(best), device=best.device)
    picked = {f: getattr(outputs, f)[rows, best][:, None] for f in _QUERY_FIELDS}
    return SimpleNamespace(**picked, presence_logits=outputs.presence_logits)
