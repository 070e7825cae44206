"""The simulated MLLM: calibrated error rate, error construction, determinism, no mask access."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from priors_fixtures import make_samples

from l2l_env.priors import PRESETS, SimPreset, SimulatedGrounder, box_iou, make_provider


@pytest.fixture(scope="module")
def samples():
    return make_samples(600, seed=3)


def _acc(groundings, samples) -> float:
    return float(np.mean([box_iou(g.box, s.box) >= 0.5 for g, s in zip(groundings, samples)]))


@pytest.mark.parametrize("preset", sorted(PRESETS))
@pytest.mark.parametrize("split", ["val", "testA", "testB"])
def test_accuracy_is_tight_on_handmade_samples(samples, preset, split):
    got = _acc(SimulatedGrounder(preset).ground_batch(samples, split), samples)
    # Low-discrepancy outcomes: far inside the 2-point tolerance even on 600 samples.
    assert got == pytest.approx(PRESETS[preset].accuracy_for(split), abs=0.005)


def test_train_and_unknown_splits_use_val_accuracy(samples):
    sim = SimulatedGrounder("florence-2-large")
    florence = PRESETS["florence-2-large"]
    assert florence.accuracy_for("train") == florence.accuracy["val"]
    assert [g.box for g in sim.ground_batch(samples, "train")] == \
        [g.box for g in sim.ground_batch(samples, "val")]
    assert [g.box for g in sim.ground_batch(samples, None)] == \
        [g.box for g in sim.ground_batch(samples, "val")]


def test_outcomes_are_constructed_on_the_right_side_of_iou_half(samples):
    groundings = SimulatedGrounder("kosmos-2").ground_batch(samples, "val")
    kinds = {g.raw for g in groundings}
    assert kinds == {"simulated:correct", "simulated:wrong_object", "simulated:miss",
                     "simulated:no_answer"}
    for g, s in zip(groundings, samples):
        if g.raw == "simulated:no_answer":
            assert g.no_prior and not g.parsed
            continue
        x, y, w, h = g.box
        assert w >= 1 and h >= 1 and x >= 0 and y >= 0
        assert x + w <= s.image.shape[1] + 1e-6 and y + h <= s.image.shape[0] + 1e-6
        iou = box_iou(g.box, s.box)
        assert (iou >= 0.5) == (g.raw == "simulated:correct"), (g, s.box)
    # jitter: correct boxes are not all the exact true box
    correct = [(g, s) for g, s in zip(groundings, samples) if g.raw == "simulated:correct"]
    assert np.mean([box_iou(g.box, s.box) < 0.99 for g, s in correct]) > 0.5


def test_wrong_objects_are_real_distractors_preferring_shared_attributes(samples):
    groundings = SimulatedGrounder("kosmos-2", seed=1).ground_batch(samples, "testB")
    shared, baseline = [], []
    for g, s in zip(groundings, samples):
        if g.raw != "simulated:wrong_object":
            continue
        ious = [box_iou(g.box, o.box) if i != s.referent else -1 for i, o in enumerate(s.objects)]
        picked = int(np.argmax(ious))
        assert ious[picked] > 0.3  # the box sits on another object
        ref = s.objects[s.referent].attributes
        count = lambda o: sum(o.attributes[k] == v for k, v in ref.items())  # noqa: E731
        others = [count(o) for i, o in enumerate(s.objects) if i != s.referent]
        shared.append(count(s.objects[picked]))
        baseline.append(np.mean(others))
    assert len(shared) > 100
    assert np.mean(shared) > np.mean(baseline) + 0.15


def test_scores_higher_on_correct_but_overlapping(samples):
    groundings = SimulatedGrounder().ground_batch(samples, "testB")
    right = np.array([g.score for g in groundings if g.raw == "simulated:correct"])
    wrong = np.array([g.score for g in groundings
                      if g.box is not None and g.raw != "simulated:correct"])
    assert np.all((right >= 0) & (right <= 1)) and np.all((wrong >= 0) & (wrong <= 1))
    assert right.mean() > wrong.mean() + 0.1
    assert wrong.max() > np.median(right)  # overlapping, not a perfect oracle


def test_deterministic_and_seed_dependent(samples):
    a = SimulatedGrounder("florence-2-large", seed=5).ground_batch(samples, "val")
    b = SimulatedGrounder("florence-2-large", seed=5).ground_batch(list(reversed(samples)), "val")
    assert a == list(reversed(b))  # per-sample, independent of order and batch
    c = SimulatedGrounder("florence-2-large", seed=6).ground_batch(samples, "val")
    assert a != c


def test_never_reads_the_mask(samples):
    sim = SimulatedGrounder("kosmos-2")
    rng = np.random.default_rng(0)
    garbage = [dataclasses.replace(s, mask=rng.random((3, 5)) > 0.5) for s in samples[:200]]
    dropped = [dataclasses.replace(s, mask=None) for s in samples[:200]]
    ref = sim.ground_batch(samples[:200], "val")
    assert sim.ground_batch(garbage, "val") == ref
    assert sim.ground_batch(dropped, "val") == ref


def test_perfect_preset_returns_the_true_box(samples):
    for g, s in zip(SimulatedGrounder("perfect").ground_batch(samples[:50], "testB"), samples[:50]):
        assert box_iou(g.box, s.box) == pytest.approx(1.0, abs=1e-3) and g.score == 1.0


def test_referent_without_distractors_falls_back_to_a_miss():
    s = make_samples(40, seed=2)
    lonely = [dataclasses.replace(x, objects=(x.objects[x.referent],), referent=0) for x in s]
    preset = SimPreset("always-wrong", {"val": 0.0}, wrong_object=1.0, no_answer=0.0)
    for g, x in zip(SimulatedGrounder(preset).ground_batch(lonely), lonely):
        assert g.raw == "simulated:miss" and box_iou(g.box, x.box) < 0.5


def test_registry_builds_it_and_rejects_unknown_names():
    sim = make_provider("simulated", preset="kosmos-2", seed=3)
    assert isinstance(sim, SimulatedGrounder) and sim.preset.name == "kosmos-2" and sim.seed == 3
    with pytest.raises(ValueError, match="unknown simulated preset"):
        SimulatedGrounder("gpt-9")
    with pytest.raises(ValueError, match="'cache', 'grounding_dino', 'mllm', 'mm_grounding_dino', "
                                         "'sam3', 'simulated'"):
        make_provider("oracle")
