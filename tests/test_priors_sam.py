"""The ``sam`` and ``sam2`` soft proposals: tiny random SAM / SAM 2 checkpoints loaded by path,
prompted by a box. The SAM 2 processor of transformers needs torchvision: its tests skip without
it."""

from __future__ import annotations

import numpy as np
import pytest

from l2l_env.priors.base import Grounding
from l2l_env.priors.proposals import NO_PRIOR_VALUE, to_soft_proposal
from l2l_env.priors.sam import Sam2Proposer, SamProposer
from mllm_fixtures import build_sam, build_sam2


@pytest.fixture(scope="module")
def proposer(tmp_path_factory):
    return SamProposer(build_sam(tmp_path_factory.mktemp("sam")))


@pytest.fixture(scope="module")
def image():
    return np.random.default_rng(0).integers(0, 256, (48, 80, 3), dtype=np.uint8)


def test_box_prompt_gives_a_probability_map(proposer, image):
    m = proposer(image, Grounding(box=(10.0, 5.0, 30.0, 20.0)), 24, 40)
    assert m.shape == (24, 40) and m.dtype == np.float32
    assert np.all((m >= 0) & (m <= 1)) and np.isfinite(m).all()
    assert m.std() > 0  # a mask, not a constant
    other = proposer(image, Grounding(box=(40.0, 20.0, 30.0, 25.0)), 24, 40)
    assert np.abs(other - m).max() > 1e-4  # the box prompt matters


def test_no_prior_is_flat(proposer, image):
    m = proposer(image, Grounding(box=None, parsed=False), 16, 20)
    assert m.shape == (16, 20) and m.dtype == np.float32 and np.all(m == NO_PRIOR_VALUE)


def test_batch_matches_single_and_box_frame_is_scaled(proposer, image):
    g = Grounding(box=(10.0, 5.0, 30.0, 20.0))
    # The same box given in a frame twice the image size (image_size), and a missing prior.
    g2 = Grounding(box=(20.0, 10.0, 60.0, 40.0), image_size=(96, 160))
    maps = proposer.propose([image, image, image], [g, Grounding(box=None), g2], 24, 40)
    single = proposer(image, g, 24, 40)
    assert maps.shape == (3, 24, 40)
    np.testing.assert_allclose(maps[0], single, atol=1e-5)
    assert np.all(maps[1] == NO_PRIOR_VALUE)
    np.testing.assert_allclose(maps[2], single, atol=1e-5)


def test_plugs_into_soft_proposals_by_name(proposer, image):
    g = Grounding(box=(10.0, 5.0, 30.0, 20.0))
    m = to_soft_proposal(g, 24, 40, kind="sam", image=image, proposer=proposer)
    np.testing.assert_allclose(m, proposer(image, g, 24, 40), atol=1e-6)


def test_missing_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="has no config.json"):
        SamProposer(tmp_path / "nowhere")


@pytest.fixture(scope="module")
def proposer2(tmp_path_factory):
    pytest.importorskip("torchvision", reason="the SAM 2 processor of transformers needs it")
    return Sam2Proposer(build_sam2(tmp_path_factory.mktemp("sam2")))


def test_sam2_box_prompt_batches_and_scales_like_sam(proposer2, image):
    g = Grounding(box=(10.0, 5.0, 30.0, 20.0))
    m = proposer2(image, g, 24, 40)
    assert m.shape == (24, 40) and m.dtype == np.float32 and np.isfinite(m).all()
    assert np.all((m >= 0) & (m <= 1)) and m.std() > 0
    other = proposer2(image, Grounding(box=(40.0, 20.0, 30.0, 25.0)), 24, 40)
    assert np.abs(other - m).max() > 1e-4  # the box prompt matters
    g2 = Grounding(box=(20.0, 10.0, 60.0, 40.0), image_size=(96, 160))
    maps = proposer2.propose([image, image, image], [g, Grounding(box=None), g2], 24, 40)
    np.testing.assert_allclose(maps[0], m, atol=1e-5)
    assert np.all(maps[1] == NO_PRIOR_VALUE)
    np.testing.assert_allclose(maps[2], m, atol=1e-5)
    by_name = to_soft_proposal(g, 24, 40, kind="sam2", image=image, proposer=proposer2)
    np.testing.assert_allclose(by_name, m, atol=1e-6)


def test_a_checkpoint_of_the_other_kind_is_a_clear_error(tmp_path):
    sam = build_sam(tmp_path / "sam")
    with pytest.raises(ValueError, match=r"sam checkpoint; use proposal kind 'sam', not 'sam2'"):
        Sam2Proposer(sam)
    qwen = tmp_path / "qwen"
    qwen.mkdir()
    (qwen / "config.json").write_text('{"model_type": "qwen2_vl"}')
    with pytest.raises(ValueError,
                       match=r"qwen/config.json: model_type 'qwen2_vl'.*\['sam', 'sam2'\]"):
        SamProposer(qwen)
