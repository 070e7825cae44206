"""Heuristic agents on hand-made 4x4 observations with known answers (choice codes of the
``construct`` action, and 0/1 in the ``select`` form), batching, save/load."""

from __future__ import annotations

import numpy as np
import pytest

import agents
from l2l_env import labels as L

G = 4
I, B, F, T = L.IGNORE, L.BACKGROUND, L.FOREGROUND, L.TEACHER   # the choice codes 0..3
HEURISTICS = ["none", "all", "threshold", "prior", "agreement", "fusion", "random"]
ORACLES = ["oracle-select", "oracle-construct"]


def obs(teacher, prior=None, no_prior: float = 0.0, truth=None) -> dict[str, np.ndarray]:
    """A single observation from 4x4 teacher (and prior, truth) maps given as nested lists."""
    t = np.asarray(teacher, np.float32).reshape(1, G, G)
    p = np.full((1, G, G), 0.5, np.float32) if prior is None else np.asarray(prior, np.float32).reshape(1, G, G)
    out = {"prior": p, "student": t.copy(), "teacher": t, "uncertainty": np.zeros_like(t),
           "text": np.zeros(8, np.float32), "no_prior": np.array([no_prior], np.float32),
           "progress": np.array([0.0], np.float32)}
    if truth is not None:
        out["truth"] = np.asarray(truth, np.float32).reshape(1, G, G)
    return out


TEACHER = [[0.95, 0.90, 0.91, 0.50],
           [0.05, 0.10, 0.09, 0.60],
           [0.99, 0.01, 0.70, 0.30],
           [0.00, 1.00, 0.89, 0.11]]
PRIOR = [[0.90, 0.10, 0.95, 0.95],
         [0.05, 0.90, 0.20, 0.50],
         [0.80, 0.79, 0.95, 0.05],
         [0.10, 0.85, 0.90, 0.19]]
TRUTH = [[1.0, 0.9, 0.0, 0.0],      # ground-truth foreground fraction per cell (oracles only)
         [0.0, 0.6, 0.2, 0.5],
         [1.0, 1.0, 0.7, 0.0],
         [0.0, 1.0, 0.0, 0.0]]


def grid(action: np.ndarray) -> list[list[int]]:
    return np.asarray(action).reshape(G, G).tolist()


def selected(codes: list[list[int]]) -> list[list[int]]:
    """The ``select`` form of a code grid: 1 wherever the code is not ignore."""
    return (np.asarray(codes) != I).astype(int).tolist()


def test_none_and_all():
    o = obs(TEACHER)
    a_none, a_all = agents.make("none").act(o), agents.make("all").act(o)
    assert a_none.shape == (G * G,) and a_none.dtype == np.int8 and (a_none == I).all()
    assert a_all.shape == (G * G,) and a_all.dtype == np.int8 and (a_all == T).all()
    sel = agents.make("all", action_form="select").act(o)
    assert sel.dtype == np.int8 and (sel == 1).all()
    assert (agents.make("none", action_form="select").act(o) == 0).all()


def test_threshold_default_tau_is_strict_at_the_boundary():
    # tau = 0.9: the teacher's label iff p > 0.9 or p < 0.1; 0.90 and 0.10 themselves are not.
    expected = [[T, I, T, I],
                [T, I, T, I],
                [T, T, I, I],
                [T, T, I, I]]
    assert grid(agents.make("threshold").act(obs(TEACHER))) == expected
    assert grid(agents.make("threshold", action_form="select").act(obs(TEACHER))) == selected(expected)


def test_threshold_tau_changes_the_selection():
    assert grid(agents.make("threshold", tau=0.85).act(obs(TEACHER))) == [[T, T, T, I],
                                                                        [T, T, T, I],
                                                                        [T, T, I, I],
                                                                        [T, T, T, T]]
    # tau = 0.5 labels everything but exact 0.5
    a = agents.make("threshold", tau=0.5).act(obs(TEACHER))
    assert (a != I).sum() == G * G - 1 and a[3] == I


def test_agreement_needs_same_label_and_both_confident():
    # teacher tau 0.9, prior tau 0.8: fg if t > 0.9 and p > 0.8; bg if t < 0.1 and p < 0.2
    got = grid(agents.make("agreement").act(obs(TEACHER, PRIOR)))
    assert got == [[T, I, T, I],   # (0,1) t=0.90 not > 0.9; (0,3) t=0.5
                   [T, I, I, I],   # (1,1) t=0.10 not < 0.1; (1,2) t bg but p=0.20 not < 0.2
                   [I, I, I, I],   # (2,0) p=0.80 not > 0.8; (2,1) t bg, p fg: disagree
                   [T, T, I, I]]   # (3,3) t=0.11 not < 0.1
    loose = grid(agents.make("agreement", tau=0.85, prior_tau=0.75).act(obs(TEACHER, PRIOR)))
    assert loose[2][0] == T and loose[0][1] == I and loose[3][2] == T
    assert grid(agents.make("agreement", action_form="select").act(obs(TEACHER, PRIOR))) == selected(got)


def test_agreement_selects_nothing_without_a_prior():
    assert (agents.make("agreement").act(obs(TEACHER, None, no_prior=1.0)) == I).all()


def test_prior_labels_every_cell_with_the_prior_and_prefers_prior_labels():
    agent = agents.make("prior")
    assert agent.preferred_label_source == "prior"
    assert agents.make("threshold").preferred_label_source is None
    assert grid(agent.act(obs(TEACHER, PRIOR))) == [[F, B, F, F],
                                                    [B, F, B, B],   # 0.50 is not above 0.5
                                                    [F, F, F, B],
                                                    [B, F, F, B]]
    assert (agent.act(obs(TEACHER, None, no_prior=1.0)) == I).all()
    # the flat 0.5 prior of a sample without a box labels everything background
    assert (agents.make("prior", skip_no_prior=False).act(obs(TEACHER, None, no_prior=1.0)) == B).all()
    sel = agents.make("prior", action_form="select")
    assert (sel.act(obs(TEACHER, PRIOR)) == 1).all() and (sel.act(obs(TEACHER, None, 1.0)) == 0).all()


def test_fusion_takes_the_prior_box_where_the_teacher_agrees_and_the_teacher_outside():
    got = grid(agents.make("fusion").act(obs(TEACHER, PRIOR)))
    assert got == [[F, T, F, I],   # (0,3) inside the box (0.95), teacher 0.50 disagrees: ignored
                   [T, I, T, T],   # (1,1) inside, teacher 0.10; (1,3) prior 0.50 is outside
                   [F, I, F, T],   # (2,1) inside (0.79), teacher 0.01
                   [T, F, F, T]]
    # without a box the teacher's label everywhere
    assert (agents.make("fusion").act(obs(TEACHER, None, no_prior=1.0)) == T).all()
    assert grid(agents.make("fusion", action_form="select").act(obs(TEACHER, PRIOR))) == selected(got)


def test_random_probability_and_seed():
    o = obs(TEACHER)
    assert (agents.make("random", p=0.0).act(o) == I).all()
    assert (agents.make("random", p=1.0).act(o) == T).all()
    batch = {k: np.repeat(v[None], 500, axis=0) for k, v in o.items()}
    a = agents.make("random", p=0.3, seed=1).act(batch)
    assert a.shape == (500, G * G) and set(np.unique(a)) == {I, T}
    assert abs((a == T).mean() - 0.3) < 0.02
    np.testing.assert_array_equal(a, agents.make("random", p=0.3, seed=1).act(batch))
    assert not np.array_equal(a, agents.make("random", p=0.3, seed=2).act(batch))
    sel = agents.make("random", p=0.3, seed=1, action_form="select").act(batch)
    np.testing.assert_array_equal(sel, (a == T).astype(np.int8))   # same draws, select form


def test_oracles_read_the_truth_observation():
    o = obs(TEACHER, PRIOR, truth=TRUTH)
    # teacher right (cell-majority) where (teacher > 0.5) == (truth > 0.5)
    assert grid(agents.make("oracle-select").act(o)) == [[T, T, I, T],
                                                         [T, I, T, I],
                                                         [T, I, T, T],
                                                         [T, T, I, T]]
    # else the prior's label where the prior is right, else nothing
    assert grid(agents.make("oracle-construct").act(o)) == [[T, T, I, T],
                                                            [T, F, T, B],
                                                            [T, F, T, T],
                                                            [T, T, I, T]]
    # never the prior of a sample without a box
    no_box = obs(TEACHER, PRIOR, no_prior=1.0, truth=TRUTH)
    np.testing.assert_array_equal(agents.make("oracle-construct").act(no_box),
                                  agents.make("oracle-select").act(no_box))
    assert grid(agents.make("oracle-select", action_form="select").act(o)) == \
        selected(grid(agents.make("oracle-select").act(o)))


@pytest.mark.parametrize("name", ORACLES)
def test_oracles_refuse_an_observation_without_truth(name):
    agent = agents.make(name)
    assert agent.needs_truth
    with pytest.raises(ValueError, match="oracle.*oracle_obs=True"):
        agent.act(obs(TEACHER, PRIOR))
    assert not any(agents.make(n).needs_truth for n in HEURISTICS)


@pytest.mark.parametrize("form", ["construct", "select"])
@pytest.mark.parametrize("name", HEURISTICS + ORACLES)
def test_batched_act_equals_single_acts(name, form):
    single = [obs(TEACHER, PRIOR, truth=TRUTH),
              obs(np.asarray(TEACHER)[::-1], PRIOR, no_prior=1.0, truth=TRUTH)]
    batch = {k: np.stack([o[k] for o in single]) for k in single[0]}
    kw = {"p": 0.0} if name == "random" else {}
    out = agents.make(name, action_form=form, **kw).act(batch)
    assert out.shape == (2, G * G) and out.dtype == np.int8
    assert out.min() >= 0 and out.max() <= (3 if form == "construct" else 1)
    for i, o in enumerate(single):
        np.testing.assert_array_equal(out[i], agents.make(name, action_form=form, **kw).act(o))


def test_bad_parameters_are_named():
    with pytest.raises(ValueError, match="'tau'"):
        agents.make("threshold", tau=1.5)
    with pytest.raises(ValueError, match="'prior_tau'"):
        agents.make("agreement", prior_tau=0.2)
    with pytest.raises(TypeError, match="unknown parameter.*'taux'"):
        agents.make("threshold", taux=0.9)
    with pytest.raises(ValueError, match="'prior'"):
        agents.make("all").act({"teacher": np.zeros((1, G, G))})
    with pytest.raises(ValueError, match="action_form='weights'"):
        agents.make("all", action_form="weights")


@pytest.mark.parametrize("name,kw", [("none", {}), ("all", {}), ("threshold", {"tau": 0.85}),
                                     ("prior", {"skip_no_prior": False}), ("fusion", {}),
                                     ("agreement", {"tau": 0.8, "prior_tau": 0.7}), ("random", {"p": 0.4}),
                                     ("random", {"p": 0.4, "action_form": "select"}),
                                     ("oracle-construct", {"action_form": "select"})])
def test_save_load_round_trip(tmp_path, name, kw):
    agent = agents.make(name, **kw)
    batch = {k: np.stack([v] * 3) for k, v in obs(TEACHER, PRIOR, truth=TRUTH).items()}
    agent.act(batch)  # advance the random agent's generator before saving
    agent.save(tmp_path / name)
    loaded = agents.load(tmp_path / name)
    assert type(loaded) is type(agent) and loaded.params == agent.params
    assert loaded.action_form == agent.action_form == kw.get("action_form", "construct")
    np.testing.assert_array_equal(loaded.act(batch), agent.act(batch))
    other = agents.NoneAgent if name != "none" else agents.AllAgent
    with pytest.raises(ValueError, match=f"saved agent is '{name}', not '{other.name}'"):
        other.load(tmp_path / name)
