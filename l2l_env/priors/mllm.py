"""The ``mllm`` prior provider: a local transformers vision-language model grounds each phrase.

:class:`MLLMGrounder` loads a checkpoint from a local path (never the hub), batches image-phrase
pairs through the family's prompt, generates greedily and parses each answer with the family's
parser (:mod:`l2l_env.priors.mllm_parsers`) into a box in original image pixels.

Supported families (auto-detected from ``config.json``'s ``model_type``):

===============  ==========================================  ======================================
family           prompt                                      answer frame
===============  ==========================================  ======================================
``qwen2_5_vl``   chat template, image + "output its bbox     ``bbox_2d`` JSON, absolute pixels of
                 coordinates using JSON format"              the resized (``smart_resize``) input
``qwen2_vl``     chat template, image + ``<|object_ref_*|>``  ``<|box_start|>(x1,y1),(x2,y2)``,
                 phrase                                      0..1000
``qwen3_vl``     chat template, image + "output the bbox      ``bbox_2d`` JSON, 0..1000 of each
                 coordinates in JSON format"                 axis of the image
``florence2``    task token + phrase                         ``<loc_i>`` bins 0..999
===============  ==========================================  ======================================

The score of a grounding is the model's own confidence in its answer: the geometric mean of the
probabilities it gave the coordinate tokens it generated (:func:`token_confidence`).

Florence-2 must be the transformers-native port (``Florence2ForConditionalGeneration``, e.g. the
``florence-community`` checkpoints), not the ``trust_remote_code`` original.

Qwen inputs are assembled from the checkpoint's image processor and tokenizer rather than its
``AutoProcessor``: in transformers 5 the Qwen-VL processors also build a video processor, which
needs torchvision, and we only need images. The assembly is the processor's own: each
``<|image_pad|>`` placeholder is expanded to ``grid_t * grid_h * grid_w / merge_size**2`` tokens
and ``mm_token_type_ids`` marks them for multimodal RoPE.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from l2l_env.priors.base import Grounding
from l2l_env.priors.checkpoints import LocalModelGrounder, checkpoint_folder, model_type
from l2l_env.priors.mllm_parsers import parse_florence2, parse_qwen2, parse_qwen3, parse_qwen25

FAMILIES = ("qwen2_vl", "qwen2_5_vl", "qwen3_vl", "florence2")
"""Canonical family names (``config.json`` ``model_type`` values)."""

DEFAULT_PROMPTS = {
    "qwen2_5_vl": 'Locate "{phrase}" in the image, output its bbox coordinates using JSON format.',
    "qwen2_vl": "Output the bounding box of <|object_ref_start|>{phrase}<|object_ref_end|> "
                "in the image.",
    "qwen3_vl": 'Locate "{phrase}" in this image and output the bbox coordinates in JSON format.',
    "florence2": "<CAPTION_TO_PHRASE_GROUNDING>{phrase}",
}
"""Default prompt per family; ``{phrase}`` is replaced by the referring phrase."""

FLORENCE_TASKS = ("<CAPTION_TO_PHRASE_GROUNDING>", "<OPEN_VOCABULARY_DETECTION>")

_FALLBACK_QWEN_CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n"
    "{% if m['content'] is string %}{{ m['content'] }}{% else %}{% for c in m['content'] %}"
    "{% if c['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}"
    "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
# Tokens that only frame an answer; box and location tokens are kept for the parsers.
_FILLER_TOKENS = ("<|im_end|>", "<|endoftext|>", "<|im_start|>", "</s>", "<s>", "<pad>")


def normalize_family(family: str) -> str:
    """``"Qwen2.5-VL"``, ``"qwen3_vl"``, ``"florence-2"`` ... -> a name in :data:`FAMILIES`."""
    key = family.lower().replace("-", "").replace("_", "").replace(".", "")
    canon = {f.replace("_", ""): f for f in FAMILIES}
    if key not in canon:
        raise ValueError(f"unknown MLLM family {family!r}; expected one of {list(FAMILIES)} "
                         "(or spellings like 'qwen2.5-vl', 'qwen3-vl', 'florence-2')")
    return canon[key]


def detect_family(model_dir: str | Path) -> str:
    """The family of a local checkpoint, from ``model_type`` in its ``config.json``."""
    found = model_type(model_dir, "MLLMGrounder")
    try:
        return normalize_family(found)
    except ValueError:
        raise ValueError(f"{Path(model_dir) / 'config.json'}: model_type {found!r} is not a "
                         f"supported MLLM grounding family; expected one of {list(FAMILIES)}, or "
                         "pass family=... (Grounding DINO and SAM 3 checkpoints have providers "
                         "of their own: grounding_dino, mm_grounding_dino, sam3)") from None


def _strip_filler(text: str, extra: Sequence[str | None]) -> str:
    for tok in (*_FILLER_TOKENS, *(t for t in extra if t)):
        text = text.replace(tok, "")
    return text.strip()


class _QwenAdapter:
    """Prompting, input assembly and parsing for Qwen2-VL, Qwen2.5-VL and Qwen3-VL."""

    def __init__(self, path: Path, family: str, prompt: str) -> None:
        from transformers import AutoImageProcessor, AutoTokenizer

        self.family = family
        self.prompt = prompt
        self.image_processor = AutoImageProcessor.from_pretrained(path)
        self.tokenizer = AutoTokenizer.from_pretrained(path, padding_side="left")
        self.tokenizer.padding_side = "left"  # decoder-only generation continues at the right
        self.chat_template = self.tokenizer.chat_template or _read_chat_template(path)
        self.image_token = "<|image_pad|>"
        self.image_token_id = self.tokenizer.convert_tokens_to_ids(self.image_token)
        self.merge = int(getattr(self.image_processor, "merge_size", 2))
        self.patch = int(getattr(self.image_processor, "patch_size", 14))

    def encode(self, images: list[Image.Image], phrases: list[str]) -> tuple[dict, list[Any]]:
        vision = self.image_processor(images=images, return_tensors="pt")
        grid = vision["image_grid_thw"]
        texts = []
        for phrase, thw in zip(phrases, grid.tolist()):
            query = self.prompt.replace("{phrase}", phrase)
            messages = [{"role": "user", "content": [{"type": "image"},
                                                     {"type": "text", "text": query}]}]
            text = self.tokenizer.apply_chat_template(
                messages, chat_template=self.chat_template, tokenize=False,
                add_generation_prompt=True)
            n_tokens = thw[0] * thw[1] * thw[2] // self.merge ** 2
            texts.append(text.replace(self.image_token, self.image_token * n_tokens, 1))
        enc = self.tokenizer(texts, padding=True, return_tensors="pt")
        inputs = {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"],
                  "mm_token_type_ids": (enc["input_ids"] == self.image_token_id).to(torch.int32),
                  "pixel_values": vision["pixel_values"], "image_grid_thw": grid}
        resized = [(h * self.patch, w * self.patch) for _, h, w in grid.tolist()]
        return inputs, resized

    def decode(self, generated: torch.Tensor, inputs: dict) -> list[str]:
        new = generated[:, inputs["input_ids"].shape[1]:]
        texts = self.tokenizer.batch_decode(new, skip_special_tokens=False)
        extra = (self.tokenizer.pad_token, self.tokenizer.eos_token)
        return [_strip_filler(t, extra) for t in texts]

    def parse(self, text: str, resized_hw: tuple[int, int], original_hw: tuple[int, int]
              ) -> Grounding:
        if self.family == "qwen2_5_vl":
            return parse_qwen25(text, resized_hw, original_hw)
        if self.family == "qwen3_vl":
            return parse_qwen3(text, original_hw)
        return parse_qwen2(text, original_hw)


def _read_chat_template(path: Path) -> str:
    """The processor-level chat template of a checkpoint, or a minimal Qwen one."""
    jinja, js = path / "chat_template.jinja", path / "chat_template.json"
    if jinja.is_file():
        return jinja.read_text()
    if js.is_file():
        return str(json.loads(js.read_text())["chat_template"])
    return _FALLBACK_QWEN_CHAT_TEMPLATE


class _FlorenceAdapter:
    """Prompting (task token + phrase) and parsing for the transformers-native Florence-2."""

    def __init__(self, path: Path, prompt: str) -> None:
        from transformers import AutoProcessor

        if not any(prompt.startswith(task) for task in FLORENCE_TASKS):
            raise ValueError(f"Florence-2 prompt must start with one of {FLORENCE_TASKS}, "
                             f"got {prompt!r}")
        self.prompt = prompt
        self.processor = AutoProcessor.from_pretrained(path)
        self.tokenizer = self.processor.tokenizer

    def encode(self, images: list[Image.Image], phrases: list[str]) -> tuple[dict, list[Any]]:
        texts = [self.prompt.replace("{phrase}", p) for p in phrases]
        enc = self.processor(text=texts, images=images, return_tensors="pt", padding=True)
        inputs = {k: enc[k] for k in ("input_ids", "attention_mask", "pixel_values")}
        return inputs, [None] * len(images)

    def decode(self, generated: torch.Tensor, inputs: dict) -> list[str]:
        tok = self.processor.tokenizer
        texts = tok.batch_decode(generated, skip_special_tokens=False)
        return [_strip_filler(t, (tok.pad_token, tok.eos_token, tok.bos_token)) for t in texts]

    def parse(self, text: str, resized_hw: Any, original_hw: tuple[int, int]) -> Grounding:
        return parse_florence2(text, original_hw)


def _model_class(family: str) -> Callable[..., torch.nn.Module]:
    import transformers

    name = {"qwen2_vl": "Qwen2VLForConditionalGeneration",
            "qwen2_5_vl": "Qwen2_5_VLForConditionalGeneration",
            "qwen3_vl": "Qwen3VLForConditionalGeneration",
            "florence2": "Florence2ForConditionalGeneration"}[family]
    return getattr(transformers, name)


class MLLMGrounder(LocalModelGrounder):
    """Grounds phrases with a local transformers vision-language model, in batches.

    :param model: path of a local checkpoint folder (``config.json``, weights, tokenizer,
        image processor).
    :param family: ``"qwen2_vl"``, ``"qwen2_5_vl"``, ``"qwen3_vl"`` or ``"florence2"`` (spellings
        like ``"qwen2.5-vl"`` work); ``None`` reads ``model_type`` from ``config.json``.
    :param device: torch device for the model.
    :param batch_size: image-phrase pairs per ``generate`` call.
    :param max_new_tokens: generation budget per answer.
    :param dtype: model dtype (``torch.dtype``, a name like ``"bfloat16"``, or ``"auto"``);
        ``None`` is float32 on CPU and the checkpoint's dtype elsewhere.
    :param prompt: prompt template with ``{phrase}``; ``None`` uses :data:`DEFAULT_PROMPTS`. For
        Florence-2 it starts with a task token, e.g. ``"<OPEN_VOCABULARY_DETECTION>{phrase}"``.
    """

    name = "mllm"

    def __init__(self, model: str | Path, family: str | None = None, device: str = "cpu",
                 batch_size: int = 8, max_new_tokens: int = 64,
                 dtype: str | torch.dtype | None = None, prompt: str | None = None) -> None:
        path = checkpoint_folder(model, "MLLM")
        if batch_size < 1 or max_new_tokens < 1:
            raise ValueError(f"batch_size and max_new_tokens must be >= 1, got {batch_size}, "
                             f"{max_new_tokens}")
        self.path = path
        self.family = normalize_family(family) if family is not None else detect_family(path)
        self.batch_size = int(batch_size)
        self.max_new_tokens = int(max_new_tokens)
        self.prompt = prompt if prompt is not None else DEFAULT_PROMPTS[self.family]
        self.adapter: _QwenAdapter | _FlorenceAdapter = (
            _FlorenceAdapter(self.path, self.prompt) if self.family == "florence2"
            else _QwenAdapter(self.path, self.family, self.prompt))
        self.load_model(_model_class(self.family), dtype, device)

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "model": str(self.path), "family": self.family,
                "prompt": self.prompt, "max_new_tokens": self.max_new_tokens}

    def answers(self, images: list[Image.Image], phrases: list[str]) -> tuple[list[str], list]:
        """The raw decoded answers for one batch, and each image's model-input size (or None)."""
        texts, _, resized = self.generate(images, phrases)
        return texts, resized

    def generate(self, images: list[Image.Image], phrases: list[str]
                 ) -> tuple[list[str], list[float], list]:
        """One greedy ``generate`` call: the decoded answers, their :func:`token_confidence`
        and each image's model-input size (or None)."""
        inputs, resized = self.adapter.encode(images, phrases)
        inputs = {k: v.to(self.device) for k, v in inputs.items()}
        inputs["pixel_values"] = inputs["pixel_values"].to(self.dtype)
        with torch.inference_mode():
            out = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens,
                                      do_sample=False, num_beams=1, output_scores=True,
                                      return_dict_in_generate=True)
            logprobs = self.model.compute_transition_scores(out.sequences, out.scores,
                                                            normalize_logits=True)
        sequences = out.sequences.cpu()
        new_ids = sequences[:, sequences.shape[1] - logprobs.shape[1]:]
        confidences = [self._confidence(ids.tolist(), lp.tolist())
                       for ids, lp in zip(new_ids, logprobs.float().cpu())]
        return self.adapter.decode(sequences, inputs), confidences, resized

    def _confidence(self, ids: list[int], logprobs: list[float]) -> float:
        """:func:`token_confidence` of one answer, up to its first end or padding token."""
        gen = self.model.generation_config
        eos = gen.eos_token_id if isinstance(gen.eos_token_id, list) else [gen.eos_token_id]
        stops = {t for t in (*eos, gen.pad_token_id) if t is not None}
        end = next((k for k, t in enumerate(ids) if t in stops), len(ids))
        tokens = self.adapter.tokenizer.convert_ids_to_tokens(ids[:end])
        return token_confidence(tokens, logprobs[:end])

    def ground_chunk(self, images: list[Image.Image], phrases: list[str]) -> list[Grounding]:
        texts, confidences, resized = self.generate(images, phrases)
        out = []
        for text, conf, rs, im in zip(texts, confidences, resized, images):
            g = self.adapter.parse(text, rs, (im.height, im.width))
            out.append(replace(g, score=conf) if g.parsed else g)
        return out


def token_confidence(tokens: Sequence[str], logprobs: Sequence[float]) -> float:
    """An MLLM's confidence in its answer: ``exp(mean log p)`` over the answer's coordinate
    tokens (those that spell a digit or a location bin), over all its tokens when none does, 0
    for an empty answer; rounded to 4 decimals.

    :param tokens: the generated tokens (before the end-of-answer token), as strings.
    :param logprobs: the log-probability the model gave each of them.
    """
    if len(tokens) != len(logprobs):
        raise ValueError(f"got {len(tokens)} tokens but {len(logprobs)} log-probabilities")
    coords = [lp for tok, lp in zip(tokens, logprobs) if any(c.isdigit() for c in tok)]
    chosen = coords or list(logprobs)
    if not chosen:
        return 0.0
    return round(float(np.exp(np.mean(chosen))), 4)
