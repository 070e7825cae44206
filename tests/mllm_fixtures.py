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


DINO_IMAGE_SIZE = 64
"""Shortest edge of the tiny Grounding DINO's input (a Swin of patch 4, four 1-block stages)."""
BERT_SPECIAL_IDS = {"[PAD]": 0, "[UNK]": 100, "[CLS]": 101, "[SEP]": 102, "[MASK]": 103,
                    ".": 1012, "?": 1029}
"""Where bert-base-uncased keeps these tokens: Grounding DINO's text masks split phrases at
ids 101, 102, 1012 and 1029 (hard-coded in the model), so the tiny vocabulary keeps them there."""


def _bert_tokenizer():
    """A word-piece tokenizer spelling any lower-case ASCII word character by character, with the
    special tokens at bert-base-uncased's ids."""
    from transformers import BertTokenizerFast

    size = max(BERT_SPECIAL_IDS.values()) + 1
    vocab = [f"[unused{i}]" for i in range(size)]
    for tok, i in BERT_SPECIAL_IDS.items():
        vocab[i] = tok
    free = (i for i in range(1, size) if i not in BERT_SPECIAL_IDS.values())
    for ch in CHARS[:-1]:
        if ch.strip() and ch not in BERT_SPECIAL_IDS and not ch.isupper():
            vocab[next(free)] = ch
            vocab[next(free)] = "##" + ch
    return BertTokenizerFast(vocab={tok: i for i, tok in enumerate(vocab)}, do_lower_case=True)


def build_grounding_dino(path: Path, seed: int = 0, family: str = "grounding_dino") -> Path:
    """A tiny ``GroundingDinoForObjectDetection`` (or, with ``family="mm_grounding_dino"``,
    ``MMGroundingDinoForObjectDetection``) + ``GroundingDinoProcessor`` checkpoint at ``path``."""
    import transformers
    from transformers import GroundingDinoProcessor
    from transformers.models.grounding_dino.image_processing_pil_grounding_dino import (
        GroundingDinoImageProcessorPil)

    path = Path(path)
    tok = _bert_tokenizer()
    prefix = {"grounding_dino": "GroundingDino", "mm_grounding_dino": "MMGroundingDino"}[family]
    config = getattr(transformers, f"{prefix}Config")(
        backbone_config=dict(model_type="swin", image_size=DINO_IMAGE_SIZE, patch_size=4,
                             embed_dim=8, depths=[1, 1, 1, 1], num_heads=[1, 1, 1, 1],
                             window_size=2, out_indices=[3, 4]),
        text_config=dict(model_type="bert", vocab_size=len(tok), hidden_size=16,
                         num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                         max_position_embeddings=64),
        num_queries=12, encoder_layers=1, decoder_layers=2, d_model=32, encoder_ffn_dim=32,
        decoder_ffn_dim=32, encoder_attention_heads=2, decoder_attention_heads=2,
        num_feature_levels=2, encoder_n_points=2, decoder_n_points=2, max_text_len=64)
    torch.manual_seed(seed)
    model = randomize(getattr(transformers, f"{prefix}ForObjectDetection")(config), seed,
                      std=0.3)
    model.save_pretrained(path)
    image_processor = GroundingDinoImageProcessorPil(
        size={"shortest_edge": DINO_IMAGE_SIZE, "longest_edge": 2 * DINO_IMAGE_SIZE})
    GroundingDinoProcessor(image_processor=image_processor, tokenizer=tok).save_pretrained(path)
    return path


SAM2_IMAGE_SIZE = 64
"""Input size of the tiny SAM 2 (Hiera stride 4 -> 16x16 features, 16x16 low-res masks)."""


def build_sam2(path: Path, seed: int = 0) -> Path:
    """A tiny ``Sam2Model`` + ``Sam2Processor`` checkpoint at ``path`` (needs torchvision)."""
    from transformers import (Sam2Config, Sam2HieraDetConfig, Sam2MaskDecoderConfig, Sam2Model,
                              Sam2Processor, Sam2PromptEncoderConfig, Sam2VisionConfig)
    from transformers.models.sam2.image_processing_sam2 import Sam2ImageProcessor

    s = SAM2_IMAGE_SIZE
    backbone = Sam2HieraDetConfig(hidden_size=8, image_size=s, patch_stride=4, patch_kernel_size=7,
                                  patch_padding=3, blocks_per_stage=[1, 1, 1, 1],
                                  embed_dim_per_stage=[8, 16, 32, 64],
                                  num_attention_heads_per_stage=[1, 1, 1, 1])
    vision = Sam2VisionConfig(backbone_config=backbone, backbone_channel_list=[64, 32, 16, 8],
                              backbone_feature_sizes=[[s // 4] * 2, [s // 8] * 2, [s // 16] * 2],
                              fpn_hidden_size=16)
    config = Sam2Config(
        vision_config=vision,
        prompt_encoder_config=Sam2PromptEncoderConfig(hidden_size=16, image_size=s, patch_size=16,
                                                      mask_input_channels=4),
        mask_decoder_config=Sam2MaskDecoderConfig(hidden_size=16, mlp_dim=32, num_hidden_layers=1,
                                                  num_attention_heads=2, iou_head_hidden_dim=16),
        memory_attention_hidden_size=8, memory_encoder_hidden_size=16, image_size=s,
        mask_downsampler_embed_dim=16, memory_fuser_embed_dim=16, memory_attention_num_layers=1,
        memory_attention_feed_forward_hidden_size=16)
    torch.manual_seed(seed)
    model = randomize(Sam2Model(config), seed, std=0.3)
    path = Path(path)
    model.save_pretrained(path)
    Sam2Processor(image_processor=Sam2ImageProcessor(
        size={"height": s, "width": s}, mask_size={"height": s // 4, "width": s // 4})
    ).save_pretrained(path)
    return path


SAM3_IMAGE_SIZE = 56
"""Input size of the tiny SAM 3 (ViT patch 14 -> 4x4 tokens, 8x8 masks)."""


def build_sam3(path: Path, seed: int = 0) -> Path:
    """A tiny ``Sam3Model`` + ``Sam3Processor`` (CLIP tokenizer spelling characters) checkpoint
    at ``path`` (needs torchvision)."""
    from transformers import (CLIPTokenizer, Sam3Config, Sam3DETRDecoderConfig,
                              Sam3DETREncoderConfig, Sam3GeometryEncoderConfig,
                              Sam3MaskDecoderConfig, Sam3Model, Sam3Processor, Sam3ViTConfig,
                              Sam3VisionConfig)
    from transformers.models.sam3.image_processing_sam3 import Sam3ImageProcessor

    s = SAM3_IMAGE_SIZE
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for ch in (c for c in CHARS if c.strip()):
        vocab.setdefault(ch, len(vocab))
        vocab.setdefault(ch + "</w>", len(vocab))
    tok = CLIPTokenizer(vocab=vocab, merges=[])
    backbone = Sam3ViTConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                             intermediate_size=32, image_size=s, patch_size=14, window_size=2,
                             global_attn_indexes=[0])
    heads = dict(num_attention_heads=2, intermediate_size=32)
    config = Sam3Config(
        vision_config=Sam3VisionConfig(backbone_config=backbone, fpn_hidden_size=16,
                                       scale_factors=[2.0, 1.0]),
        text_config=dict(vocab_size=len(tok), hidden_size=16, projection_dim=16,
                         num_hidden_layers=1, max_position_embeddings=32, bos_token_id=0,
                         eos_token_id=1, pad_token_id=1, **heads),
        geometry_encoder_config=Sam3GeometryEncoderConfig(
            hidden_size=16, num_layers=1, mask_fuser_hidden_size=16, mask_fuser_num_layers=1,
            **heads),
        detr_encoder_config=Sam3DETREncoderConfig(hidden_size=16, num_layers=1, **heads),
        detr_decoder_config=Sam3DETRDecoderConfig(hidden_size=16, num_layers=1, num_queries=5,
                                                  **heads),
        mask_decoder_config=Sam3MaskDecoderConfig(hidden_size=16, num_upsampling_stages=2))
    torch.manual_seed(seed)
    model = randomize(Sam3Model(config), seed, std=0.3)
    path = Path(path)
    model.save_pretrained(path)
    Sam3Processor(image_processor=Sam3ImageProcessor(
        size={"height": s, "width": s}, mask_size={"height": s // 4, "width": s // 4}),
        tokenizer=tok).save_pretrained(path)
    return path
