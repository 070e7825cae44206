"""Tiny, randomly initialised vision-language and SAM checkpoints written to a folder, offline.

Each builder writes a checkpoint the way a real one lies on disk (``config.json``, weights,
tokenizer files, ``preprocessor_config.json``, chat template) so that code under test loads it by
path through the real ``from_pretrained`` path. The weights are random: answers are garbage, which
is the point (the grounder must survive them). Sizes are chosen for speed (a few 10k parameters).

The tokenizers are character-level (printable ASCII, one token per character) plus each family's
special tokens, so that any answer a real model gives can be spelled by these ones.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers

from transformers import PreTrainedTokenizerFast

QWEN_SPECIALS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>",
                 "<|vision_end|>", "<|image_pad|>", "<|video_pad|>", "<|box_start|>",
                 "<|box_end|>", "<|object_ref_start|>", "<|object_ref_end|>")
QWEN_CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n"
    "{% if m['content'] is string %}{{ m['content'] }}{% else %}{% for c in m['content'] %}"
    "{% if c['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}"
    "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
FLORENCE_SPECIALS = ("<s>", "<pad>", "</s>", "<unk>", "<image>")
CHARS = tuple(chr(i) for i in range(32, 127)) + ("\n",)


def char_tokenizer(specials: tuple[str, ...], extra: tuple[str, ...] = (),
                   **kwargs) -> PreTrainedTokenizerFast:
    """A character-level fast tokenizer: ``specials`` (ids 0..), then ASCII, then ``extra``."""
    vocab = {t: i for i, t in enumerate(specials + CHARS + extra)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token=specials[0]))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    tok.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(tokenizer_object=tok, **kwargs)


WEIGHT_STD = 0.5
"""Std of the random weights: large enough that answers depend on the image and the phrase."""


def randomize(model: torch.nn.Module, seed: int, std: float = WEIGHT_STD) -> torch.nn.Module:
    """Redraw every matrix of ``model`` from ``N(0, std)`` (seeded); norms and biases stay."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.ndim >= 2:
                p.copy_(torch.randn(p.shape, generator=gen) * std)
    return model


def _qwen_tokenizer() -> PreTrainedTokenizerFast:
    return char_tokenizer(QWEN_SPECIALS, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                          extra_special_tokens=list(QWEN_SPECIALS[1:]),
                          chat_template=QWEN_CHAT_TEMPLATE)


def _qwen_text_config(tok: PreTrainedTokenizerFast) -> dict:
    return dict(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=4096,
                rope_parameters={"rope_type": "default", "mrope_section": [2, 3, 3],
                                 "rope_theta": 10000.0},
                bos_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
                pad_token_id=tok.pad_token_id)


def _qwen_token_ids(tok: PreTrainedTokenizerFast) -> dict:
    ids = tok.convert_tokens_to_ids
    return dict(image_token_id=ids("<|image_pad|>"), video_token_id=ids("<|video_pad|>"),
                vision_start_token_id=ids("<|vision_start|>"),
                vision_end_token_id=ids("<|vision_end|>"))


def _save_qwen(path: Path, model: torch.nn.Module, tok: PreTrainedTokenizerFast,
               max_pixels: int, patch_size: int = 14) -> Path:
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import (
        Qwen2VLImageProcessorPil)

    path.mkdir(parents=True, exist_ok=True)
    model.generation_config.pad_token_id = tok.pad_token_id
    model.generation_config.eos_token_id = tok.eos_token_id
    model.save_pretrained(path)
    tok.save_pretrained(path)
    Qwen2VLImageProcessorPil(min_pixels=(4 * patch_size) ** 2, max_pixels=max_pixels,
                             patch_size=patch_size).save_pretrained(path)
    # As in released Qwen-VL checkpoints; AutoProcessor on it needs torchvision (video), the
    # grounder must not.
    cfg_path = path / "preprocessor_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["processor_class"] = type(model).__name__.replace("ForConditionalGeneration", "Processor")
    cfg_path.write_text(json.dumps(cfg, indent=2))
    return path


def build_qwen2_vl(path: Path, seed: int = 0, max_pixels: int = 112 * 112) -> Path:
    """A tiny ``Qwen2VLForConditionalGeneration`` checkpoint at ``path`` (returned)."""
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration

    tok = _qwen_tokenizer()
    config = Qwen2VLConfig(
        text_config=_qwen_text_config(tok),
        vision_config=dict(depth=1, embed_dim=32, hidden_size=32, num_heads=2, mlp_ratio=2),
        **_qwen_token_ids(tok))
    torch.manual_seed(seed)
    return _save_qwen(Path(path), randomize(Qwen2VLForConditionalGeneration(config), seed), tok,
                      max_pixels)


def build_qwen2_5_vl(path: Path, seed: int = 0, max_pixels: int = 112 * 112) -> Path:
    """A tiny ``Qwen2_5_VLForConditionalGeneration`` checkpoint at ``path`` (returned)."""
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    tok = _qwen_tokenizer()
    config = Qwen2_5_VLConfig(
        text_config=_qwen_text_config(tok),
        vision_config=dict(depth=2, hidden_size=32, out_hidden_size=32, intermediate_size=64,
                           num_heads=2, window_size=56, fullatt_block_indexes=[1]),
        **_qwen_token_ids(tok))
    torch.manual_seed(seed)
    return _save_qwen(Path(path), randomize(Qwen2_5_VLForConditionalGeneration(config), seed),
                      tok, max_pixels)


def build_qwen3_vl(path: Path, seed: int = 0, max_pixels: int = 128 * 128) -> Path:
    """A tiny ``Qwen3VLForConditionalGeneration`` checkpoint at ``path`` (returned); its image
    processor has Qwen3-VL's 16-pixel patches (32-pixel merged tokens)."""
    from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration

    tok = _qwen_tokenizer()
    text = _qwen_text_config(tok)
    text.update(head_dim=16, rope_parameters={"rope_type": "default", "mrope_section": [2, 3, 3],
                                              "mrope_interleaved": True, "rope_theta": 10000.0})
    config = Qwen3VLConfig(
        text_config=text,
        vision_config=dict(depth=1, hidden_size=32, intermediate_size=64, num_heads=2,
                           out_hidden_size=32, num_position_embeddings=16,
                           deepstack_visual_indexes=[0]),
        **_qwen_token_ids(tok))
    torch.manual_seed(seed)
    return _save_qwen(Path(path), randomize(Qwen3VLForConditionalGeneration(config), seed), tok,
                      max_pixels, patch_size=16)


FLORENCE_IMAGE_SIZE = 64
"""Input size of the tiny Florence-2 (stride 32 -> a 2x2 feature map -> 5 image tokens)."""


def build_florence2(path: Path, seed: int = 0) -> Path:
    """A tiny ``Florence2ForConditionalGeneration`` (DaViT + BART) checkpoint at ``path``."""
    from transformers import (Florence2Config, Florence2ForConditionalGeneration,
                              Florence2Processor)
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    locs = tuple(f"<loc_{i}>" for i in range(1000))
    tok = char_tokenizer(FLORENCE_SPECIALS, extra=locs, bos_token="<s>", pad_token="<pad>",
                         eos_token="</s>", unk_token="<unk>", image_token="<image>",
                         extra_special_tokens=["<image>"])
    side = FLORENCE_IMAGE_SIZE // 32
    image_processor = CLIPImageProcessorPil(
        size={"height": FLORENCE_IMAGE_SIZE, "width": FLORENCE_IMAGE_SIZE}, do_center_crop=False,
        crop_size={"height": FLORENCE_IMAGE_SIZE, "width": FLORENCE_IMAGE_SIZE},
        image_seq_length=side * side + 1)
    text_config = dict(model_type="bart", vocab_size=len(tok), d_model=32, encoder_layers=1,
                       decoder_layers=1, encoder_attention_heads=2, decoder_attention_heads=2,
                       encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=256,
                       pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
                       eos_token_id=tok.eos_token_id, decoder_start_token_id=tok.eos_token_id,
                       forced_bos_token_id=None, forced_eos_token_id=tok.eos_token_id)
    vision_config = dict(depths=(1, 1, 1, 1), embed_dim=(8, 8, 16, 16), num_heads=(1, 1, 2, 2),
                         num_groups=(1, 1, 2, 2), window_size=2, projection_dim=32,
                         drop_path_rate=0.0, max_position_embeddings=8)
    config = Florence2Config(text_config=text_config, vision_config=vision_config,
                             image_token_id=tok.convert_tokens_to_ids("<image>"))
    torch.manual_seed(seed)
    model = randomize(Florence2ForConditionalGeneration(config), seed)
    gen = model.generation_config
    gen.pad_token_id, gen.eos_token_id = tok.pad_token_id, tok.eos_token_id
    gen.bos_token_id, gen.decoder_start_token_id = tok.bos_token_id, tok.eos_token_id
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    Florence2Processor(image_processor=image_processor, tokenizer=tok).save_pretrained(path)
    return path


SAM_IMAGE_SIZE = 64
"""Input size of the tiny SAM (patch 16 -> a 4x4 embedding, 16x16 low-res masks)."""


def build_sam(path: Path, seed: int = 0) -> Path:
    """A tiny ``SamModel`` + ``SamProcessor`` checkpoint at ``path`` (returned)."""
    from transformers import SamConfig, SamModel, SamProcessor
    from transformers.models.sam.image_processing_pil_sam import SamImageProcessorPil

    config = SamConfig(
        vision_config=dict(hidden_size=16, output_channels=16, num_hidden_layers=2,
                           num_attention_heads=2, image_size=SAM_IMAGE_SIZE, patch_size=16,
                           window_size=2, global_attn_indexes=[1], num_pos_feats=8, mlp_dim=32),
        prompt_encoder_config=dict(hidden_size=16, image_size=SAM_IMAGE_SIZE, patch_size=16,
                                   mask_input_channels=4),
        mask_decoder_config=dict(hidden_size=16, mlp_dim=32, num_hidden_layers=2,
                                 num_attention_heads=2, iou_head_hidden_dim=16))
    torch.manual_seed(seed)
    model = randomize(SamModel(config), seed, std=0.3)
    processor = SamProcessor(SamImageProcessorPil(
        size={"longest_edge": SAM_IMAGE_SIZE},
        pad_size={"height": SAM_IMAGE_SIZE, "width": SAM_IMAGE_SIZE},
        mask_size={"longest_edge": SAM_IMAGE_SIZE // 4},
        mask_pad_size={"height": SAM_IMAGE_SIZE // 4, "width": SAM_IMAGE_SIZE // 4}))
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return path
