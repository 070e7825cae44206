"""The ``grounding_dino`` and ``mm_grounding_dino`` prior providers: an open-set detector grounds
each phrase, and its best box, with its score, is the prior.

:class:`GroundingDinoGrounder` loads ``GroundingDinoForObjectDetection`` or
``MMGroundingDinoForObjectDetection`` with the checkpoint's ``GroundingDinoProcessor`` from a
local folder. The phrase is the detector's text prompt, lower-cased and ended with a dot as the
model was trained (cut to the model's ``max_text_len`` tokens). The processor's
``post_process_grounded_object_detection`` scores every query (the largest sigmoid over the
phrase's tokens) and scales its box to the image; the best-scored query is the grounding, its
score the grounding's. A best score under ``threshold`` (default 0: never) gives no prior.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from PIL import Image

from l2l_env.priors.base import Grounding
from l2l_env.priors.checkpoints import LocalModelGrounder, checkpoint_family, checkpoint_folder
from l2l_env.priors.mllm_parsers import finalize_box

FAMILIES = {"grounding_dino": "grounding-dino", "mm_grounding_dino": "mm-grounding-dino"}
"""Detector family -> the ``model_type`` of its checkpoints."""
MODEL_CLASSES = {"grounding_dino": "GroundingDinoForObjectDetection",
                 "mm_grounding_dino": "MMGroundingDinoForObjectDetection"}


def detector_prompt(phrase: str) -> str:
    """The text prompt of a phrase: lower case, ending with ``"."`` (Grounding DINO's format)."""
    text = " ".join(phrase.lower().split())
    return text if text.endswith(".") else text + "."


class GroundingDinoGrounder(LocalModelGrounder):
    """Grounds phrases with a local Grounding DINO or MM-Grounding-DINO checkpoint, in batches.

    :param model: local checkpoint folder (``config.json``, weights, tokenizer, processor).
    :param family: ``"grounding_dino"`` or ``"mm_grounding_dino"``; ``None`` reads it from
        ``config.json``. A checkpoint of another family is an error naming the folder.
    :param device: torch device. :param batch_size: image-phrase pairs per forward pass.
    :param threshold: best scores below it give no prior (0: always the best box).
    :param dtype: model dtype (see :func:`l2l_env.priors.checkpoints.resolve_dtype`).
    """

    def __init__(self, model: str | Path, family: str | None = None, device: str = "cpu",
                 batch_size: int = 8, threshold: float = 0.0,
                 dtype: str | torch.dtype | None = None) -> None:
        import transformers

        self.path = checkpoint_folder(model, "Grounding DINO")
        found = checkpoint_family(self.path, "the grounding_dino/mm_grounding_dino providers",
                                  FAMILIES)
        if family is not None and family != found:
            raise ValueError(f"{self.path}: a {found} checkpoint (model_type "
                             f"{FAMILIES[found]!r}), not {family}; use provider {found!r}")
        if batch_size < 1 or not 0.0 <= threshold <= 1.0:
            raise ValueError(f"batch_size must be >= 1 and threshold in [0, 1], got {batch_size}, "
                             f"{threshold}")
        self.family = self.name = found
        self.batch_size = int(batch_size)
        self.threshold = float(threshold)
        self.processor = transformers.AutoProcessor.from_pretrained(self.path)
        self.load_model(getattr(transformers, MODEL_CLASSES[found]), dtype, device)

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "model": str(self.path), "family": self.family,
                "threshold": self.threshold}

    def ground_chunk(self, images: list[Image.Image], phrases: list[str]) -> list[Grounding]:
        texts = [detector_prompt(p) for p in phrases]
        inputs = self.processor(images=images, text=texts, padding=True, truncation=True,
                                max_length=self.model.config.max_text_len, return_tensors="pt")
        inputs = {k: v.to(self.device) for k, v in inputs.items()}
        inputs["pixel_values"] = inputs["pixel_values"].to(self.dtype)
        with torch.inference_mode():
            outputs = self.model(**inputs)
        sizes = [(im.height, im.width) for im in images]
        results = self.processor.post_process_grounded_object_detection(
            outputs, input_ids=inputs["input_ids"], threshold=-1.0, target_sizes=sizes)
        return [self._best(result, size) for result, size in zip(results, sizes)]

    def _best(self, result: dict[str, Any], size: tuple[int, int]) -> Grounding:
        """The best-scored query of one image's post-processed detections."""
        scores = result["scores"].float()
        best = int(scores.argmax())
        score = round(float(scores[best]), 4)
        label = str(result["text_labels"][best])
        if score < self.threshold:
            return Grounding(box=None, score=0.0, raw=f"{self.name}: best score {score} < "
                             f"threshold {self.threshold}", image_size=size)
        x1, y1, x2, y2 = (float(v) for v in result["boxes"][best])
        return finalize_box(x1, y1, x2, y2, *size, raw=label, score=score)
