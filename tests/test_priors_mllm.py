"""The ``mllm`` prior provider: answer parsers on canned answers, and the real load-prompt-
generate-parse path on tiny random Qwen2-VL, Qwen2.5-VL, Qwen3-VL and Florence-2 checkpoints."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from l2l_env.data.types import ReferringSample
from l2l_env.priors import make_provider
from l2l_env.priors.base import Grounding
from l2l_env.priors.checkpoints import to_pil
from l2l_env.priors.mllm import MLLMGrounder, detect_family, normalize_family, token_confidence
from l2l_env.priors.mllm_parsers import (finalize_box, json_boxes, parse_florence2, parse_qwen2,
                                         parse_qwen3, parse_qwen25)
from mllm_fixtures import build_florence2, build_qwen2_5_vl, build_qwen2_vl, build_qwen3_vl
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize

HW = (70, 100)  # original (height, width) used by the parser tests


def assert_box(g: Grounding, expected: tuple[float, float, float, float], tol: float = 1e-6):
    assert g.parsed and g.box is not None, g
    np.testing.assert_allclose(g.box, expected, atol=tol)


def assert_no_prior(g: Grounding, raw: str):
    assert g.box is None and g.no_prior and not g.parsed and g.raw == raw and g.score == 0.0


# --------------------------------------------------------------------------- Qwen2.5-VL parser

def test_qwen25_maps_resized_pixels_to_original():
    # The model saw a 56x112 resize of a 70x100 image: x scales by 100/112, y by 70/56.
    g = parse_qwen25('[{"bbox_2d": [28, 14, 56, 42], "label": "dog"}]', (56, 112), HW)
    assert_box(g, (25.0, 17.5, 25.0, 35.0))
    assert g.image_size == HW and g.score == 1.0


def test_qwen25_code_fence_and_chatter():
    text = ('Sure! Here is the box:\n```json\n[\n  {"bbox_2d": [10, 20, 30, 40], '
            '"label": "the man"}\n]\n```\nLet me know if you need more.')
    assert_box(parse_qwen25(text, HW, HW), (10, 20, 20, 20))


def test_qwen25_several_boxes_first_or_highest_score():
    two = '[{"bbox_2d": [1, 2, 11, 12]}, {"bbox_2d": [50, 20, 60, 30]}]'
    assert_box(parse_qwen25(two, HW, HW), (1, 2, 10, 10))
    scored = ('[{"bbox_2d": [1, 2, 11, 12], "score": 0.3}, '
              '{"bbox_2d": [50, 20, 60, 30], "score": 0.9}]')
    g = parse_qwen25(scored, HW, HW)
    assert_box(g, (50, 20, 10, 10))
    assert g.score == pytest.approx(0.9)


def test_qwen25_swapped_clamped_degenerate():
    assert_box(parse_qwen25('{"bbox_2d": [40, 30, 10, 5]}', HW, HW), (10, 5, 30, 25))
    assert_box(parse_qwen25('{"bbox_2d": [-20, 10, 500, 900]}', HW, HW), (0, 10, 100, 60))
    for text in ('{"bbox_2d": [10, 10, 10, 50]}', '{"bbox_2d": [200, 10, 300, 50]}'):
        assert_no_prior(parse_qwen25(text, HW, HW), text)


def test_qwen25_broken_json_falls_back_to_regex():
    truncated = '```json\n[{"bbox_2d": [5, 6, 25, 36], "label": "cat"'
    assert_box(parse_qwen25(truncated, HW, HW), (5, 6, 20, 30))
    single_quotes = "[{'bbox_2d': [5, 6, 25, 36]}]"
    assert_box(parse_qwen25(single_quotes, HW, HW), (5, 6, 20, 30))
    assert json_boxes("the box is [1, 2, 3, 4] I think") == [([1.0, 2.0, 3.0, 4.0], None)]


@pytest.mark.parametrize("text", ["", "I cannot find it.", "[]", '{"label": "dog"}',
                                  '[{"bbox_2d": [1, 2, 3]}]', '{"bbox_2d": "none"}',
                                  '{"point_2d": [10, 20]}'])
def test_qwen25_no_box_is_no_prior(text):
    assert_no_prior(parse_qwen25(text, HW, HW), text)


# --------------------------------------------------------------------------- Qwen3-VL parser

def test_qwen3_json_box_is_relative_to_1000():
    # The Qwen3-VL answer frame: bbox_2d normalised to 0..1000 of each axis (no resized size).
    text = '```json\n[\n\t{"bbox_2d": [100, 200, 500, 800], "label": "the dog"}\n]\n```'
    g = parse_qwen3(text, HW)
    assert_box(g, (10.0, 14.0, 40.0, 42.0))
    assert g.image_size == HW and g.raw == text
    assert_box(parse_qwen3('{"bbox_2d": [0, 0, 1000, 1000]}', HW), (0, 0, 100, 70))


def test_qwen3_several_boxes_swapped_clamped():
    scored = ('[{"bbox_2d": [0, 0, 100, 100], "score": 0.2}, '
              '{"bbox_2d": [500, 800, 100, 200], "score": 0.7}]')
    assert_box(parse_qwen3(scored, HW), (10.0, 14.0, 40.0, 42.0))
    assert_box(parse_qwen3('{"bbox_2d": [-50, 200, 1200, 800]}', HW), (0.0, 14.0, 100.0, 42.0))


@pytest.mark.parametrize("text", ["", "no box", '{"point_2d": [10, 20]}',
                                  '{"bbox_2d": [300, 300, 300, 900]}'])
def test_qwen3_no_box_is_no_prior(text):
    assert_no_prior(parse_qwen3(text, HW), text)


# --------------------------------------------------------------------------- Qwen2-VL parser

def test_qwen2_box_tokens_normalised_to_1000():
    text = ("<|object_ref_start|>the dog<|object_ref_end|>"
            "<|box_start|>(100,200),(500,800)<|box_end|>")
    assert_box(parse_qwen2(text, HW), (10.0, 14.0, 40.0, 42.0))


@pytest.mark.parametrize("text", [
    "<|box_start|>(500, 800), (100, 200)<|box_end|>",  # swapped corners, spaces
    "<|box_start|>(100,200),(500,800)",  # generation cut before <|box_end|>
    "The box is (100,200),(500,800).",  # box tokens dropped by a decoder
])
def test_qwen2_variants(text):
    assert_box(parse_qwen2(text, HW), (10.0, 14.0, 40.0, 42.0))


def test_qwen2_first_box_clamped_and_degenerate():
    two = "<|box_start|>(0,0),(1200,500)<|box_end|><|box_start|>(600,600),(700,700)<|box_end|>"
    assert_box(parse_qwen2(two, HW), (0.0, 0.0, 100.0, 35.0))
    for text in ("<|box_start|>(100,100),(100,900)<|box_end|>", "no box here", "(1,2)"):
        assert_no_prior(parse_qwen2(text, HW), text)


# --------------------------------------------------------------------------- Florence-2 parser

def test_florence_bins_to_pixel_centres():
    g = parse_florence2("the dog<loc_100><loc_200><loc_499><loc_799>", HW)
    # bin b -> (b + 0.5) * size / 1000
    assert_box(g, (10.05, 14.035, 39.9, 41.93))


def test_florence_first_box_swapped_clamped():
    text = "dog<loc_499><loc_799><loc_100><loc_200>dog<loc_0><loc_0><loc_999><loc_999></s>"
    assert_box(parse_florence2(text, HW), (10.05, 14.035, 39.9, 41.93))
    big = "<loc_100><loc_200><loc_5000><loc_1200>"
    assert_box(parse_florence2(big, HW), (10.05, 14.035, 99.95 - 10.05, 69.965 - 14.035))


@pytest.mark.parametrize("text", ["", "a dog", "<loc_1><loc_2><loc_3>",
                                  "<loc_10><loc_10>x<loc_20><loc_20>",
                                  "<loc_10><loc_10><loc_10><loc_90>"])
def test_florence_no_box_is_no_prior(text):
    assert_no_prior(parse_florence2(text, HW), text)


# --------------------------------------------------------------------------- every parser

def _valid_or_flagged(g: Grounding, hw: tuple[int, int]) -> None:
    if g.box is None:
        assert not g.parsed
        return
    x, y, w, h = g.box
    assert g.parsed and w > 0 and h > 0
    assert 0 <= x and 0 <= y and x + w <= hw[1] + 1e-6 and y + h <= hw[0] + 1e-6


def test_parsers_never_crash_nor_leave_the_image():
    rng = np.random.default_rng(0)
    alphabet = list('0123456789,.-()[]{}":bbox_2d <|box_start|><loc_>e ')
    for _ in range(300):
        text = "".join(rng.choice(alphabet, size=int(rng.integers(0, 60))))
        for g in (parse_qwen25(text, (56, 112), HW), parse_qwen2(text, HW),
                  parse_qwen3(text, HW), parse_florence2(text, HW)):
            _valid_or_flagged(g, HW)
            assert g.raw == text
    nan = '{"bbox_2d": [NaN, 1, 5, 6]}'
    assert_no_prior(parse_qwen25(nan, HW, HW), nan)


def test_finalize_box_contract():
    assert_box(finalize_box(5, 6, 1, 2, 10, 10, "r", score=3.0), (1, 2, 4, 4))
    assert finalize_box(5, 6, 1, 2, 10, 10, "r", score=3.0).score == 1.0
    assert_no_prior(finalize_box(float("inf"), 0, 1, 1, 10, 10, "r"), "r")


# --------------------------------------------------------------------------- family detection

def test_family_names_and_detection(tmp_path):
    assert normalize_family("Qwen2.5-VL") == "qwen2_5_vl"
    assert normalize_family("qwen2-vl") == "qwen2_vl"
    assert normalize_family("florence-2") == "florence2"
    assert normalize_family("Qwen3-VL") == "qwen3_vl"
    with pytest.raises(ValueError, match="unknown MLLM family 'llava'"):
        normalize_family("llava")
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llava"}))
    with pytest.raises(ValueError, match="model_type 'llava'"):
        detect_family(tmp_path)
    with pytest.raises(FileNotFoundError, match="no config.json"):
        detect_family(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        MLLMGrounder(tmp_path / "nowhere")


# --------------------------------------------------------------------------- real model path

BUILDERS = {"qwen2_vl": build_qwen2_vl, "qwen2_5_vl": build_qwen2_5_vl,
            "qwen3_vl": build_qwen3_vl, "florence2": build_florence2}


@pytest.fixture(scope="module", params=sorted(BUILDERS))
def checkpoint(request, tmp_path_factory):
    family = request.param
    return family, BUILDERS[family](tmp_path_factory.mktemp(family))


@pytest.fixture(scope="module")
def grounder(checkpoint):
    _, path = checkpoint
    return MLLMGrounder(path, batch_size=2, max_new_tokens=12)


def _samples() -> list[ReferringSample]:
    rng = np.random.default_rng(1)
    sizes = [(70, 100), (48, 64), (50, 120)]  # 8, 4 and 8 image tokens for Qwen: padding bites
    phrases = ["the red dog", "man with a {hat}", "a"]
    return [ReferringSample(image=rng.integers(0, 256, (h, w, 3), dtype=np.uint8),
                            mask=np.zeros((h, w), bool), phrase=p, image_id=i, ref_id=i,
                            sent_id=i, box=(0.0, 0.0, 1.0, 1.0))
            for i, ((h, w), p) in enumerate(zip(sizes, phrases))]


def test_grounder_runs_end_to_end_in_batches(checkpoint, grounder):
    family, path = checkpoint
    assert grounder.family == family  # auto-detected from config.json
    assert grounder.config()["family"] == family
    samples = _samples()
    out = grounder.ground_batch(samples)  # batch_size 2: a padded batch of two, then one
    assert len(out) == len(samples)
    for g, s in zip(out, samples):
        assert isinstance(g, Grounding) and isinstance(g.raw, str)
        assert g.image_size == s.image.shape[:2]
        _valid_or_flagged(g, s.image.shape[:2])
    # A random model says different things for different inputs (so the next check bites) ...
    assert len({g.raw for g in out}) >= 2
    # ... and batching (left padding, mixed image sizes) changes nothing: one by one agrees.
    single = MLLMGrounder(path, batch_size=1, max_new_tokens=12)
    assert single.ground_batch(samples) == out
    assert grounder.ground_image(samples[2].image, samples[2].phrase) == out[2]


@pytest.mark.parametrize("build,family,patch,answer", [
    (build_qwen2_5_vl, "qwen2.5-vl", 28, '[{{"bbox_2d": [0, 0, {rw}, {rh}]}}]'),
    (build_qwen3_vl, "qwen3-vl", 32, '{{"bbox_2d": [0, 0, 1000, 1000]}}'),
])
def test_qwen_answers_refer_to_the_original_image(tmp_path, build, family, patch, answer):
    """The input is resized to ``patch``-pixel tokens; Qwen2.5-VL answers in pixels of the
    resized input, Qwen3-VL in a relative 0-1000 frame: either way an answer covering the whole
    input is the whole original image."""
    g = MLLMGrounder(build(tmp_path), family=family, max_new_tokens=2)
    samples = _samples()
    images = [to_pil(s.image) for s in samples]
    _, resized = g.answers(images, [s.phrase for s in samples])
    assert resized == [smart_resize(im.height, im.width, patch, (2 * patch) ** 2,
                                    (4 * patch) ** 2) for im in images]
    (rh, rw), im = resized[2], images[2]
    whole = g.adapter.parse(answer.format(rh=rh, rw=rw), (rh, rw), (im.height, im.width))
    assert_box(whole, (0, 0, im.width, im.height))


@pytest.mark.parametrize("family,answer,expected", [
    ("qwen2_vl", "<|box_start|>(100,200),(500,800)<|box_end|>", (10.0, 14.0, 40.0, 42.0)),
    ("florence2", "dog<loc_100><loc_200><loc_499><loc_799>", (10.05, 14.035, 39.9, 41.93)),
])
def test_decode_keeps_box_tokens(tmp_path, family, answer, expected):
    """Box/location tokens are special tokens: decoding must keep them for the parser."""
    g = MLLMGrounder(BUILDERS[family](tmp_path), max_new_tokens=2)
    tok = g.adapter.tokenizer if family != "florence2" else g.adapter.processor.tokenizer
    ids = tok(answer, add_special_tokens=False)["input_ids"]
    prompt = torch.zeros((1, 3), dtype=torch.long)
    if family == "florence2":  # encoder-decoder: generate returns decoder tokens only
        prompt = torch.empty((1, 0), dtype=torch.long)
    generated = torch.tensor([prompt[0].tolist() + ids + [tok.eos_token_id, tok.pad_token_id]])
    text = g.adapter.decode(generated, {"input_ids": prompt})[0]
    assert text == answer
    assert_box(g.adapter.parse(text, None, HW), expected)


def test_registry_builds_mllm_by_name(tmp_path):
    path = build_qwen2_vl(tmp_path)
    provider = make_provider("mllm", model=str(path), family="qwen2-vl", device="cpu",
                             batch_size=4, max_new_tokens=4)
    assert isinstance(provider, MLLMGrounder) and provider.name == "mllm"
    g = provider.ground(_samples()[1])
    _valid_or_flagged(g, (48, 64))


# --------------------------------------------------------------------------- confidence

def test_token_confidence_weighs_the_coordinate_tokens():
    lp = np.log([0.9, 0.5, 0.2, 0.99])
    # Only the digit tokens count: sqrt(0.5 * 0.2).
    assert token_confidence(["{", "4", "2", "}"], lp) == pytest.approx(np.sqrt(0.1), abs=1e-4)
    assert token_confidence(["<loc_10>", "a"], np.log([0.25, 1.0])) == 0.25
    assert token_confidence(["a", "b"], np.log([0.5, 0.5])) == 0.5  # no digits: every token
    assert token_confidence([], []) == 0.0
    with pytest.raises(ValueError, match="2 tokens but 1"):
        token_confidence(["a", "b"], [0.0])


def test_generate_confidence_is_the_models_own_probability(tmp_path):
    """A one-token answer's confidence is the probability of that token in a plain forward pass."""
    g = MLLMGrounder(build_qwen2_vl(tmp_path), max_new_tokens=1)
    samples = _samples()
    images, phrases = [to_pil(s.image) for s in samples], [s.phrase for s in samples]
    texts, confidences, _ = g.generate(images, phrases)
    inputs, _ = g.adapter.encode(images, phrases)
    with torch.inference_mode():
        probs = torch.softmax(g.model(**inputs).logits[:, -1].float(), dim=-1)
    stops = {g.model.generation_config.eos_token_id, g.model.generation_config.pad_token_id}
    checked = 0
    for row, conf in zip(probs, confidences):
        token = int(row.argmax())
        expected = 0.0 if token in stops else round(float(row[token]), 4)
        assert conf == pytest.approx(expected, abs=2e-4)
        checked += token not in stops
    assert checked >= 1 and len(texts) == len(samples)


def test_parsed_answers_carry_the_generation_confidence(tmp_path, monkeypatch):
    g = MLLMGrounder(build_qwen3_vl(tmp_path), max_new_tokens=1)
    answers = (['{"bbox_2d": [100, 200, 500, 800]}', "no box"], [0.37, 0.8], [None, None])
    monkeypatch.setattr(g, "generate", lambda images, phrases: answers)
    out = g.ground_images([np.zeros((70, 100, 3), np.uint8)] * 2, ["a", "b"])
    assert_box(out[0], (10.0, 14.0, 40.0, 42.0))
    assert out[0].score == 0.37
    assert_no_prior(out[1], "no box")  # an unparsed answer stays a flagged no-prior (score 0)
