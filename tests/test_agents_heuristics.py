"""Heuristic agents on hand-made 4x4 observations with known answers, batching, save/load."""

from __future__ import annotations

import numpy as np
import pytest

import agents

G = 4


def obs(teacher, prior=None, no_prior: float = 0.0) -> dict[str, np.ndarray]:
    """A single observation from 4x4 teacher (and prior) maps given as nested lists."""
    t = np.asarray(teacher, np.float32).reshape(1, G, G)
    p = np.full((1, G, G), 0.5, np.float32) if prior is None else np.asarray(prior, np.float32).reshape(1, G, G)
    return {"prior": p, "student": t.copy(), "teacher": t, "uncertainty": np.zeros_like(t),
            "text": np.zeros(8, np.float32), "no_prior": np.array([no_prior], np.float32),
            "progress": np.array([0.0], np.float32)}


TEACHER = [[0.95, 0.90, 0.91, 0.50],
           [0.05, 0.10, 0.09, 0.60],
           [0.99, 0.01, 0.70, 0.30],
           [0.00, 1.00, 0.89, 0.11]]
PRIOR = [[0.90, 0.10, 0.95, 0.95],
         [0.05, 0.90, 0.20, 0.50],
         [0.80, 0.79, 0.95, 0.05],
         [0.10, 0.85, 0.90, 0.19]]


def grid(action: np.ndarray) -> list[list[int]]:
    return np.asarray(action).reshape(G, G).tolist()


def test_none_and_all():
    o = obs(TEACHER)
    a_none, a_all = agents.make("none").act(o), agents.make("all").act(o)
    assert a_none.shape == (G * G,) and a_none.dtype == np.int8 and a_none.sum() == 0
    assert a_all.shape == (G * G,) and a_all.dtype == np.int8 and a_all.sum() == G * G


def test_threshold_default_tau_is_strict_at_the_boundary():
    # tau = 0.9: selected iff p > 0.9 or p < 0.1; 0.90 and 0.10 themselves are not.
    assert grid(agents.make("threshold").act(obs(TEACHER))) == [[1, 0, 1, 0],
                                                              [1, 0, 1, 0],
                                                              [1, 1, 0, 0],
                                                              [1, 1, 0, 0]]


def test_threshold_tau_changes_the_selection():
    assert grid(agents.make("threshold", tau=0.85).act(obs(TEACHER))) == [[1, 1, 1, 0],
                                                                        [1, 1, 1, 0],
                                                                        [1, 1, 0, 0],
                                                                        [1, 1, 1, 1]]
    # tau = 0.5 selects everything but exact 0.5
    a = agents.make("threshold", tau=0.5).act(obs(TEACHER))
    assert a.sum() == G * G - 1 and a[3] == 0


def test_agreement_needs_same_label_and_both_confident():
    # teacher tau 0.9, prior tau 0.8: fg if t > 0.9 and p > 0.8; bg if t < 0.1 and p < 0.2
    got = grid(agents.make("agreement").act(obs(TEACHER, PRIOR)))
    assert got == [[1, 0, 1, 0],   # (0,1) t=0.90 not > 0.9; (0,3) t=0.5
                   [1, 0, 0, 0],   # (1,1) t=0.10 not < 0.1; (1,2) t bg but p=0.20 not < 0.2
                   [0, 0, 0, 0],   # (2,0) p=0.80 not > 0.8; (2,1) t bg, p fg: disagree
                   [1, 1, 0, 0]]   # (3,3) t=0.11 not < 0.1
    loose = grid(agents.make("agreement", tau=0.85, prior_tau=0.75).act(obs(TEACHER, PRIOR)))
    assert loose[2][0] == 1 and loose[0][1] == 0 and loose[3][2] == 1


def test_agreement_selects_nothing_without_a_prior():
    assert agents.make("agreement").act(obs(TEACHER, None, no_prior=1.0)).sum() == 0


def test_prior_selects_all_and_prefers_prior_labels():
    agent = agents.make("prior")
    assert agent.preferred_label_source == "prior"
    assert agents.make("threshold").preferred_label_source is None
    assert agent.act(obs(TEACHER, PRIOR)).sum() == G * G
    assert agent.act(obs(TEACHER, None, no_prior=1.0)).sum() == 0
    assert agents.make("prior", skip_no_prior=False).act(obs(TEACHER, None, no_prior=1.0)).sum() == G * G


def test_random_probability_and_seed():
    o = obs(TEACHER)
    assert agents.make("random", p=0.0).act(o).sum() == 0
    assert agents.make("random", p=1.0).act(o).sum() == G * G
    batch = {k: np.repeat(v[None], 500, axis=0) for k, v in o.items()}
    a = agents.make("random", p=0.3, seed=1).act(batch)
    assert a.shape == (500, G * G) and abs(a.mean() - 0.3) < 0.02
    np.testing.assert_array_equal(a, agents.make("random", p=0.3, seed=1).act(batch))
    assert not np.array_equal(a, agents.make("random", p=0.3, seed=2).act(batch))


@pytest.mark.parametrize("name", ["none", "all", "threshold", "prior", "agreement", "random"])
def test_batched_act_equals_single_acts(name):
    single = [obs(TEACHER, PRIOR), obs(np.asarray(TEACHER)[::-1], PRIOR, no_prior=1.0)]
    batch = {k: np.stack([o[k] for o in single]) for k in single[0]}
    kw = {"p": 0.0} if name == "random" else {}
    out = agents.make(name, **kw).act(batch)
    assert out.shape == (2, G * G) and out.dtype == np.int8
    for i, o in enumerate(single):
        np.testing.assert_array_equal(out[i], agents.make(name, **kw).act(o))


def test_bad_parameters_are_named():
    with pytest.raises(ValueError, match="'tau'"):
        agents.make("threshold", tau=1.5)
    with pytest.raises(ValueError, match="'prior_tau'"):
        agents.make("agreement", prior_tau=0.2)
    with pytest.raises(TypeError, match="unknown parameter.*'taux'"):
        agents.make("threshold", taux=0.9)
    with pytest.raises(ValueError, match="'prior'"):
        agents.make("all").act({"teacher": np.zeros((1, G, G))})


@pytest.mark.parametrize("name,kw", [("none", {}), ("all", {}), ("threshold", {"tau": 0.85}),
                                     ("prior", {"skip_no_prior": False}),
                                     ("agreement", {"tau": 0.8, "prior_tau": 0.7}), ("random", {"p": 0.4})])
def test_save_load_round_trip(tmp_path, name, kw):
    agent = agents.make(name, **kw)
    batch = {k: np.stack([v] * 3) for k, v in obs(TEACHER, PRIOR).items()}
    agent.act(batch)  # advance the random agent's generator before saving
    agent.save(tmp_path / name)
    loaded = agents.load(tmp_path / name)
    assert type(loaded) is type(agent) and loaded.params == agent.params
    np.testing.assert_array_equal(loaded.act(batch), agent.act(batch))
    other = agents.NoneAgent if name != "none" else agents.AllAgent
    with pytest.raises(ValueError, match=f"saved agent is '{name}', not '{other.name}'"):
        other.load(tmp_path / name)
