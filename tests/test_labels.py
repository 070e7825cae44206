"""Label construction (l2l_env.labels) on hand-made 2x2-cell, 4x4-pixel examples with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from l2l_env import labels as L

# A 2x2 grid over 4x4 pixels: cells are (0,0) top-left, (0,1) top-right, (1,0), (1,1) (row-major).
TEACHER = np.array([[0.9, 0.9, 0.1, 0.1],
                    [0.9, 0.9, 0.1, 0.6],
                    [0.1, 0.1, 0.9, 0.5],     # 0.5 is not above 0.5: background
                    [0.1, 0.4, 0.9, 0.9]], np.float32)
TRUTH = np.array([[1, 1, 0, 0],
                  [1, 0, 0, 0],
                  [0, 0, 1, 1],
                  [0, 0, 1, 1]], bool)


def test_choices_and_codes():
    assert L.CHOICES == ("ignore", "background", "foreground", "teacher")
    assert (L.IGNORE, L.BACKGROUND, L.FOREGROUND, L.TEACHER) == (0, 1, 2, 3)


def test_upsample_and_cell_fraction_are_inverse_on_blocks():
    cells = np.array([[0.0, 1.0], [0.25, 0.5]], np.float32)
    up = L.upsample_cells(cells, 2)
    assert up.shape == (4, 4)
    np.testing.assert_array_equal(up[:2, 2:], np.ones((2, 2)))
    np.testing.assert_array_equal(L.cell_fraction(up, 2), cells)
    np.testing.assert_array_equal(L.cell_fraction(TRUTH.astype(np.float32), 2),
                                  [[0.75, 0.0], [0.0, 1.0]])


def test_construct_gives_exact_label_and_weight_pixels():
    codes = np.array([[L.IGNORE, L.BACKGROUND], [L.FOREGROUND, L.TEACHER]])
    out = L.construct(codes, TEACHER)
    assert out.codes.dtype == np.int8
    np.testing.assert_array_equal(out.codes, codes)
    np.testing.assert_array_equal(out.weight, [[0, 0, 1, 1],
                                               [0, 0, 1, 1],
                                               [1, 1, 1, 1],
                                               [1, 1, 1, 1]])
    np.testing.assert_array_equal(out.label, [[0, 0, 0, 0],    # ignored: 0; background: 0
                                              [0, 0, 0, 0],
                                              [1, 1, 1, 0],    # foreground cell; teacher > 0.5
                                              [1, 1, 1, 1]])
    assert out.label.dtype == np.float32 and out.weight.dtype == np.float32
    np.testing.assert_array_equal(out.cell_label, [[0.0, 0.0], [1.0, 0.75]])
    np.testing.assert_array_equal(out.selected, [[False, True], [True, True]])


def test_construct_teacher_everywhere_copies_the_thresholded_teacher():
    out = L.construct(np.full((2, 2), L.TEACHER), TEACHER)
    np.testing.assert_array_equal(out.label, (TEACHER > 0.5).astype(np.float32))
    assert out.weight.min() == 1.0
    out = L.construct(np.zeros((2, 2), np.int8), TEACHER)
    assert out.weight.max() == 0.0 and out.label.max() == 0.0 and not out.selected.any()


def test_from_selection_teacher_source_keeps_teacher_pixels_of_selected_cells():
    sel = np.array([[True, False], [False, True]])
    out = L.from_selection(sel, TEACHER, "teacher")
    np.testing.assert_array_equal(out.codes, [[L.TEACHER, L.IGNORE], [L.IGNORE, L.TEACHER]])
    np.testing.assert_array_equal(out.weight, L.upsample_cells(sel.astype(np.float32), 2))
    np.testing.assert_array_equal(out.label, [[1, 1, 0, 0],
                                              [1, 1, 0, 0],
                                              [0, 0, 1, 0],
                                              [0, 0, 1, 1]])
    np.testing.assert_array_equal(out.cell_label, [[1.0, 0.0], [0.0, 0.75]])
    # the same as constructing with the teacher code on the selected cells
    same = L.construct(out.codes, TEACHER)
    np.testing.assert_array_equal(same.label, out.label)
    np.testing.assert_array_equal(same.weight, out.weight)


def test_from_selection_other_sources_name_the_cell_majority():
    prior = np.array([[1.0, 1.0, 0.0, 0.0],
                      [1.0, 0.0, 0.0, 0.0],
                      [0.0, 0.0, 0.9, 0.9],
                      [0.0, 0.0, 0.9, 0.2]], np.float32)
    sel = np.array([[True, True], [False, True]])
    out = L.from_selection(sel, prior, "prior")
    # (0,0): 3/4 foreground -> foreground; (0,1): background; (1,1): 3/4 -> foreground
    np.testing.assert_array_equal(out.codes, [[L.FOREGROUND, L.BACKGROUND], [L.IGNORE, L.FOREGROUND]])
    # ... but the label keeps the source's own pixel labels
    np.testing.assert_array_equal(out.label, [[1, 1, 0, 0],
                                              [1, 0, 0, 0],
                                              [0, 0, 1, 1],
                                              [0, 0, 1, 0]])
    np.testing.assert_array_equal(out.weight[2:, :2], np.zeros((2, 2)))
    assert out.weight.sum() == 12
    # a tie (exactly half the pixels) is not a majority
    half = np.array([[1, 0], [1, 0]], np.float32)
    codes, _ = L.select_codes(np.ones((1, 1), bool), half, "fused")
    assert codes.tolist() == [[L.BACKGROUND]]


def test_choice_scores_exact_numbers():
    s = L.choice_scores(TEACHER, TRUTH, 2, wrong_cost=2.0, fg_weight=3.0)
    assert s.shape == (4, 4) and s.dtype == np.float32
    # cell (0,0): truth 1,1,1,0 (fg weight 3): bg (-6-6-6+1)/4, fg (3+3+3-2)/4, teacher all fg = fg
    # cell (0,1): truth 0: bg 1, fg -2, teacher wrong on one pixel (0.6): (1+1+1-2)/4
    # cell (1,0): truth 0, teacher all bg: bg 1, fg -2, teacher 1
    # cell (1,1): truth 1 (weight 3): bg -6, fg 3, teacher wrong on the 0.5 pixel: (3+3+3-6)/4
    np.testing.assert_allclose(s, [[0.0, -4.25, 1.75, 1.75],
                                   [0.0, 1.0, -2.0, 0.25],
                                   [0.0, 1.0, -2.0, 1.0],
                                   [0.0, -6.0, 3.0, 0.75]], rtol=0, atol=1e-6)


def test_choice_scores_defaults_and_wrong_cost():
    assert L.choice_scores(TEACHER, TRUTH, 2) == pytest.approx(
        L.choice_scores(TEACHER, TRUTH, 2, wrong_cost=2.0, fg_weight=4.0))  # the defaults
    s = L.choice_scores(TEACHER, TRUTH, 2, fg_weight=1.0)  # wrong_cost 2
    np.testing.assert_allclose(s[0], [0.0, -1.25, 0.25, 0.25], atol=1e-6)
    np.testing.assert_allclose(s[3], [0.0, -2.0, 1.0, 0.25], atol=1e-6)
    free = L.choice_scores(TEACHER, TRUTH, 2, wrong_cost=0.0, fg_weight=1.0)
    # without a cost every choice scores its fraction of right pixels
    np.testing.assert_allclose(free[:, L.FOREGROUND], [0.75, 0.0, 0.0, 1.0], atol=1e-6)
    np.testing.assert_allclose(free[:, L.BACKGROUND], [0.25, 1.0, 1.0, 0.0], atol=1e-6)
    np.testing.assert_allclose(free[:, L.TEACHER], [0.75, 0.75, 1.0, 0.75], atol=1e-6)


@pytest.mark.parametrize("wrong_cost", [0.5, 2.0, 4.0])
def test_labelling_pays_only_above_the_break_even_accuracy(wrong_cost):
    """A cell whose foreground label is right on a fraction q of its pixels scores
    q - wrong_cost (1 - q): positive exactly when q > wrong_cost / (1 + wrong_cost)."""
    grid, s = 1, 10
    for k in range(s * s + 1):
        truth = np.zeros((s, s), bool)
        truth.ravel()[:k] = True
        q = k / (s * s)
        fg = L.choice_scores(np.zeros((s, s)), truth, grid, wrong_cost=wrong_cost,
                             fg_weight=1.0)[0, L.FOREGROUND]
        assert fg == pytest.approx(q - wrong_cost * (1 - q), abs=1e-5)
        if abs(q - wrong_cost / (1 + wrong_cost)) > 1e-9:
            assert (fg > 0) == (q > wrong_cost / (1 + wrong_cost))


def test_construct_scores_agree_with_choice_scores():
    """The score of a constructed label's pixels equals the table entry of its code, per cell."""
    rng = np.random.default_rng(0)
    teacher = rng.random((8, 8)).astype(np.float32)
    truth = rng.random((8, 8)) > 0.6
    codes = rng.integers(0, 4, (4, 4))
    table = L.choice_scores(teacher, truth, 4, wrong_cost=1.5, fg_weight=2.0)
    out = L.construct(codes, teacher)
    w = np.where(truth, 2.0, 1.0)
    pix = np.where(out.weight > 0, w * np.where((out.label > 0.5) == truth, 1.0, -1.5), 0.0)
    np.testing.assert_allclose(L.cell_fraction(pix, 4).ravel(),
                               table[np.arange(16), codes.ravel()], atol=1e-5)


def test_iou_scores_pay_foreground_above_tau_over_one_plus_tau():
    """A cell whose foreground fraction is f scores f - tau (1 - f) for `foreground`: positive
    exactly where f > tau / (1 + tau), the Dinkelbach threshold of the best-IoU label."""
    truth = np.zeros((8, 8), bool)
    truth[:, :3] = True  # per 4x4 cell: fractions 0.75, 0, 0.75, 0
    teacher = np.zeros((8, 8), np.float32)
    for tau in (0.2, 0.5, 0.9):
        s = L.iou_choice_scores(teacher, truth, 2, tau=tau)
        assert s[0, L.FOREGROUND] == pytest.approx(0.75 - tau * 0.25)
        assert s[1, L.FOREGROUND] == pytest.approx(-tau)
        assert (s[:, L.FOREGROUND] > 0).tolist() == [True, False, True, False]
        assert s[:, L.IGNORE].tolist() == [0.0] * 4


def test_iou_scores_argmax_is_a_label_at_least_as_good_as_the_teacher():
    rng = np.random.default_rng(0)
    truth = np.zeros((16, 16), bool)
    truth[4:11, 3:9] = True
    teacher = np.clip(truth + rng.normal(0, 0.45, truth.shape), 0, 1).astype(np.float32)
    s = L.iou_choice_scores(teacher, truth, 8)  # tau: the teacher's own IoU here
    built = L.construct(s.argmax(1).reshape(8, 8).astype(np.int8), teacher)
    fg = (built.label > 0.5) & (built.weight > 0.5)

    def iou(a):
        return (a & truth).sum() / (a | truth).sum()

    assert iou(fg) >= iou(teacher > 0.5)


def test_the_heldout_reward_names_its_objectives():
    from l2l_env.rewards import make_reward

    assert make_reward("heldout", objective="iou").objective == "iou"
    with pytest.raises(ValueError, match="objective='f1'; expected one of"):
        make_reward("heldout", objective="f1")
