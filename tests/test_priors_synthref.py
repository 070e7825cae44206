"""The simulated presets on SynthRef: Acc@0.5 within 2 points of the published numbers."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from l2l_env.data import load_split
from l2l_env.data.types import RefSplit
from l2l_env.priors import PRESETS, SimulatedGrounder, load_priors
from l2l_env.priors.cli import main
from l2l_env.priors.report import prior_quality

EVAL_SPLITS = ("val", "testA", "testB")
NUM_EVAL = 1000  # SynthRef's default


@pytest.fixture(scope="module")
def splits(l2l_cache):
    return {s: load_split("synthref", s, data_root=l2l_cache, num_eval=NUM_EVAL)
            for s in EVAL_SPLITS}


@pytest.fixture(scope="module")
def prior_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("priors")


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_preset_accuracy_on_synthref_within_two_points(splits, prior_dir, preset):
    for split, samples in splits.items():
        priors = load_priors("synthref", split, samples, preset=preset, cache_dir=prior_dir)
        quality = prior_quality(priors, samples)
        assert quality["count"] == NUM_EVAL
        target = PRESETS[preset].accuracy_for(split)
        assert abs(quality["acc@0.5"] - target) <= 0.02, (preset, split, quality, target)
        assert 0.0 <= quality["proposal_mIoU"] <= 1.0


def test_priors_never_see_synthref_masks(splits):
    samples = RefSplit(splits["testB"].table, "per_sentence")[:150]
    sim = SimulatedGrounder("florence-2-large")
    rng = np.random.default_rng(0)
    garbage = [dataclasses.replace(s, mask=rng.random(s.mask.shape) > 0.5) for s in samples]
    assert sim.ground_batch(garbage, "testB") == sim.ground_batch(samples, "testB")


def test_report_on_synthref(l2l_cache, prior_dir, capsys):
    args = ["report", "--dataset", "synthref", "--data-root", str(l2l_cache), "-o",
            f"num_eval={NUM_EVAL}", "--cache-dir", str(prior_dir), "--json",
            *[a for s in EVAL_SPLITS for a in ("--split", s)]]
    assert main(args) == 0
    default = json.loads(capsys.readouterr().out)
    assert main([*args, "--preset", "perfect"]) == 0
    perfect = json.loads(capsys.readouterr().out)
    for split in EVAL_SPLITS:
        assert set(default[split]) == {"acc@0.5", "proposal_mIoU"}
        assert abs(default[split]["acc@0.5"] - PRESETS["qwen2.5-vl-7b"].accuracy_for(split)) <= 0.02
        assert perfect[split]["acc@0.5"] == 1.0
        # a box is not a shape, but the right box covers the shape well; wrong boxes cost mIoU
        assert 0.5 < perfect[split]["proposal_mIoU"] < 0.95
        assert default[split]["proposal_mIoU"] < perfect[split]["proposal_mIoU"]


def test_mistake_priors_are_wrong_and_mostly_on_a_similar_object(splits, prior_dir):
    from l2l_env.priors import box_iou, load_mistake_priors

    samples = splits["testA"]  # testA: distractors share the referent's shape
    table = load_mistake_priors("synthref", "testA", samples, cache_dir=prior_dir, seed=1)
    records = RefSplit(samples.table, "per_sentence")
    on_object = similar = 0
    for s in records[:300]:
        box = table.get(s.sample_id).box
        assert box is not None and box_iou(box, s.box) < 0.5  # every one is a mistake
        others = [o for k, o in enumerate(s.objects) if k != s.referent]
        hit = max(others, key=lambda o: box_iou(box, o.box), default=None)
        if hit is not None and box_iou(box, hit.box) >= 0.5:
            on_object += 1
            similar += hit.category == s.objects[s.referent].category
    assert on_object >= 0.6 * 300  # three in four aim at another object
    assert similar >= 0.5 * on_object  # preferring one of the referent's shape
