"""Metrics against hand-computed values."""

import numpy as np
import pytest

from l2l_env.metrics import METRIC_KEYS, MetricAccumulator, iou, segmentation_metrics


def _mask(shape, *slices):
    m = np.zeros(shape, dtype=bool)
    for s in slices:
        m[s] = True
    return m


def test_hand_computed_values():
    gt1 = _mask((4, 4), np.s_[0:2, 0:2])            # 4 px
    pr1 = _mask((4, 4), np.s_[0:2, 0:1])            # 2 px inside: IoU 2/4 = 0.5
    gt2 = _mask((4, 4), np.s_[:, :])                # 16 px
    pr2 = _mask((4, 4), np.s_[:, :])                # IoU 1
    gt3 = _mask((4, 4), np.s_[0:1, 0:2])            # 2 px
    pr3 = _mask((4, 4), np.s_[3:4, 3:4])            # disjoint: IoU 0, union 3
    m = segmentation_metrics([pr1, pr2, pr3], [gt1, gt2, gt3])
    assert set(m) == set(METRIC_KEYS)
    assert m["mIoU"] == pytest.approx((0.5 + 1 + 0) / 3)
    assert m["oIoU"] == pytest.approx((2 + 16 + 0) / (4 + 16 + 3))
    assert m["prec@0.5"] == pytest.approx(2 / 3)
    assert m["prec@0.6"] == pytest.approx(1 / 3)
    assert m["prec@0.9"] == pytest.approx(1 / 3)


def test_empty_union_scores_zero():
    empty = np.zeros((3, 3), bool)
    assert iou(empty, empty)[0] == 0.0
    m = segmentation_metrics([empty], [empty])
    assert m["mIoU"] == 0.0 and m["oIoU"] == 0.0


def test_accumulator_equals_one_shot_and_handles_varying_sizes():
    rng = np.random.default_rng(0)
    preds = [rng.random((5 + i, 7)) > 0.5 for i in range(6)]
    gts = [rng.random((5 + i, 7)) > 0.4 for i in range(6)]
    acc = MetricAccumulator()
    acc.update(preds[:2], gts[:2])
    acc.update(preds[2:], gts[2:])
    assert acc.count == 6
    assert acc.compute() == pytest.approx(segmentation_metrics(preds, gts))


def test_batched_arrays_and_shape_errors():
    rng = np.random.default_rng(1)
    p, g = rng.random((8, 6, 6)) > 0.5, rng.random((8, 6, 6)) > 0.5
    assert segmentation_metrics(p, g) == pytest.approx(segmentation_metrics(list(p), list(g)))
    with pytest.raises(ValueError, match="does not match"):
        segmentation_metrics(p, g[:, :5])
    with pytest.raises(ValueError, match="no samples"):
        MetricAccumulator().compute()
