"""The ``grounding_dino`` / ``mm_grounding_dino`` providers on tiny random checkpoints loaded by
path: the real processor -> detector -> post-processing path, the best box and its score."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from l2l_env.data.types import ReferringSample
from l2l_env.priors import make_provider
from l2l_env.priors.checkpoints import to_pil
from l2l_env.priors.cli import main as priors_main
from l2l_env.priors.grounding_dino import GroundingDinoGrounder, detector_prompt
from l2l_env.priors.cache import read_priors
from mllm_fixtures import build_grounding_dino, build_qwen2_vl

FAMILIES = ("grounding_dino", "mm_grounding_dino")


@pytest.fixture(scope="module", params=FAMILIES)
def checkpoint(request, tmp_path_factory):
    family = request.param
    return family, build_grounding_dino(tmp_path_factory.mktemp(family), family=family)


def _samples(sizes=((70, 100), (48, 64), (50, 120))) -> list[ReferringSample]:
    rng = np.random.default_rng(3)
    phrases = ["The red dog", "man with a {hat}", "a"]
    return [ReferringSample(image=rng.integers(0, 256, (h, w, 3), dtype=np.uint8),
                            mask=np.zeros((h, w), bool), phrase=p, image_id=i, ref_id=i,
                            sent_id=i, box=(0.0, 0.0, 1.0, 1.0))
            for i, ((h, w), p) in enumerate(zip(sizes, phrases))]


def test_detector_prompt_is_lower_case_and_ends_with_a_dot():
    assert detector_prompt("  The Red   Dog ") == "the red dog."
    assert detector_prompt("a cat.") == "a cat."


def test_best_box_and_score_through_the_processor(checkpoint):
    family, path = checkpoint
    grounder = make_provider(family, model=str(path), batch_size=2)
    assert isinstance(grounder, GroundingDinoGrounder)
    assert grounder.family == grounder.name == family and grounder.config()["family"] == family
    samples = _samples()
    out = grounder.ground_batch(samples)
    assert len(out) == 3
    for g, s in zip(out, samples):
        h, w = s.image.shape[:2]
        assert g.image_size == (h, w) and 0.0 <= g.score <= 1.0
        if g.box is not None:  # a random detector may give a box outside the image: flagged
            x, y, bw, bh = g.box
            assert g.parsed and bw > 0 and bh > 0 and x + bw <= w + 1e-4 and y + bh <= h + 1e-4
    # The score is the detector's own: the largest sigmoid over queries and phrase tokens.
    s = samples[0]
    proc = grounder.processor
    inputs = proc(images=[to_pil(s.image)], text=[detector_prompt(s.phrase)], return_tensors="pt")
    with torch.inference_mode():
        logits = grounder.model(**inputs).logits
    assert out[0].score == pytest.approx(float(torch.sigmoid(logits).max()), abs=1e-4)
    # Different phrases on one image are scored differently: the text reaches the detector.
    other = grounder.ground_images([s.image], ["the blue square on the left"])[0]
    assert other.score != out[0].score or other.box != out[0].box


def test_batches_agree_with_one_by_one(checkpoint):
    family, path = checkpoint
    samples = _samples(sizes=((48, 64),) * 3)  # one size: no image padding in the batch
    batched = GroundingDinoGrounder(path, batch_size=3).ground_batch(samples)
    single = GroundingDinoGrounder(path, batch_size=1).ground_batch(samples)
    for a, b in zip(batched, single):
        assert a.raw == b.raw and a.score == pytest.approx(b.score, abs=1e-4)
        if a.box is not None:
            np.testing.assert_allclose(a.box, b.box, atol=1e-3)


def test_threshold_gives_no_prior(checkpoint):
    _, path = checkpoint
    g = GroundingDinoGrounder(path, threshold=1.0).ground_image(_samples()[0].image, "a dog")
    assert g.no_prior and g.score == 0.0 and "threshold" in g.raw


def test_wrong_or_missing_checkpoints_are_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        GroundingDinoGrounder(tmp_path / "nowhere")
    qwen = build_qwen2_vl(tmp_path / "qwen")
    with pytest.raises(ValueError, match=r"model_type 'qwen2_vl'.*grounding_dino"):
        make_provider("grounding_dino", model=str(qwen))
    dino = build_grounding_dino(tmp_path / "dino")
    with pytest.raises(ValueError, match=r"dino.*grounding_dino checkpoint.*mm_grounding_dino"):
        make_provider("mm_grounding_dino", model=str(dino))
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "config.json").write_text(json.dumps({"model_type": "detr"}))
    with pytest.raises(ValueError, match=r"bad/config.json: model_type 'detr'"):
        GroundingDinoGrounder(tmp_path / "bad")


def test_l2l_priors_compute_records_detector_scores(tmp_path, l2l_cache):
    path = build_grounding_dino(tmp_path / "dino", family="mm_grounding_dino")
    out = tmp_path / "p.jsonl"
    args = ["--dataset", "synthref", "--data-root", str(l2l_cache), "-o", "num_eval=60",
            "-o", "num_train=40", "--split", "val", "--limit", "4", "--provider",
            "mm_grounding_dino", "--model", str(path), "--batch-size", "2", "--out", str(out)]
    assert priors_main(args) == 0
    entries = read_priors(out)
    assert entries.header["provider"]["name"] == "mm_grounding_dino"
    scores = [g.score for g in entries.groundings.values()]
    assert len(scores) == 4 and all(0.0 < s < 1.0 for s in scores)  # the detector's own
