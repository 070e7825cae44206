"""The agents benchmark's precision-at-equal-coverage arithmetic, on hand-made numbers."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

_spec = importlib.util.spec_from_file_location(
    "bench_agents", Path(__file__).resolve().parents[1] / "benchmarks" / "bench_agents.py")
bench = importlib.util.module_from_spec(_spec)
sys.modules.setdefault("bench_agents", bench)  # dataclasses look their module up by name
_spec.loader.exec_module(bench)


def test_quality_is_pooled_precision_and_coverage():
    right = np.array([[1.0, 0.5, 0.0, 1.0]])
    sel = np.array([[True, True, False, False]])
    assert bench.quality(sel, right) == pytest.approx((0.5, 0.75))
    cov, prec = bench.quality(np.zeros_like(sel), right)
    assert cov == 0.0 and np.isnan(prec)


def test_top_fraction_selects_the_highest_scores_over_all_states():
    scores = np.array([[0.9, 0.1], [0.5, 0.7]])
    assert bench.top_fraction(scores, 0.5).tolist() == [[True, False], [False, True]]
    assert bench.top_fraction(scores, 1.0).all()


def test_best_at_takes_the_best_setting_with_enough_coverage():
    pts = [{"coverage": 0.2, "precision": 0.99}, {"coverage": 0.5, "precision": 0.9},
           {"coverage": 0.6, "precision": 0.95}, {"coverage": 0.9, "precision": float("nan")}]
    assert bench.best_at(pts, 0.5) == 0.95
    assert bench.best_at(pts, 0.1) == 0.99
    assert np.isnan(bench.best_at(pts, 0.95))
