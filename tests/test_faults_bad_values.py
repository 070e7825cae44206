"""The last raw tracebacks become one line naming the value at fault: a seed too large for the
RNGs, a negative reset seed (after which the env still works), and l2l-data show's --num and
--out."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import l2l_env
from env_fixtures import tiny_env_kwargs
from experiments.run import main as run_main
from l2l_env.data.cli import main as data_main

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("seed", ["99999999999999999999", "4294967296"])
def test_a_seed_out_of_range_blames_seed(seed, capsys):
    assert run_main(["--config", "smoke", "--seed", seed, "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert f"config key 'seed'={seed} must be < 4294967296 (2**32)" in err
    assert "agent_options" not in err


def test_a_negative_reset_seed_is_named_and_the_env_still_learns(l2l_cache):
    import agents

    env = gym.make(l2l_env.ENV_ID, **tiny_env_kwargs(l2l_cache))
    with pytest.raises(ValueError, match=r"reset\(seed=-1\): seed must be None or an int"):
        env.reset(seed=-1)
    env.reset(seed=0)
    agent = agents.make("l2l", n_steps=8, minibatch_size=8, n_epochs=1, hidden=8,
                        dilations=[1])
    agent.learn(env, 8)
    obs, _ = env.reset(seed=0)
    assert np.isfinite(obs["prior"]).all()


def test_show_names_a_negative_num(tmp_path, capsys):
    assert data_main(["show", "--num", "-3", "--out", str(tmp_path / "pics")]) == 2
    err = capsys.readouterr().err
    assert err.strip() == "l2l-data: error: --num -3: expected the number of samples to draw, >= 1"
    assert not (tmp_path / "pics").exists()


def test_show_names_an_out_that_is_a_file(tmp_path, capsys):
    out = tmp_path / "pictures.png"
    out.write_bytes(b"")
    assert data_main(["show", "--out", str(out)]) == 2
    assert capsys.readouterr().err.strip() == (f"l2l-data: error: --out {out} is a file; "
                                               "expected a folder for the pictures")
