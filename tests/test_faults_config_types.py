"""One strict builder for every config: unknown keys and values of the wrong type are errors that
name the key before any work starts (through gym.make, SegmenterConfig and l2l-run --dry-run)."""

from __future__ import annotations

import pytest

from experiments.run import main as run_main
from l2l_env.config import make_config
from segmenter import SegmenterConfig
from segmenter.shared.typed import describe_type, fits


@pytest.mark.parametrize("key, value, expected", [
    ("update_interval", 8.5, "update_interval=8.5 has type float; expected an integer"),
    ("grid_size", 8.0, "grid_size=8.0 has type float; expected an integer"),
    ("episode_steps", True, "episode_steps=True has type bool; expected an integer"),
    ("probe_size", "4", "probe_size='4' has type str; expected an integer"),
    ("data_root", 3, "data_root=3 has type int; expected a string or null"),
    ("pseudo_weight", float("nan"), "pseudo_weight=nan"),
    ("diagnostics", 1, "diagnostics=1 has type int; expected true or false"),
])
def test_env_config_names_a_value_of_the_wrong_type(key, value, expected):
    with pytest.raises(ValueError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        make_config(**{key: value})


def test_env_config_accepts_ints_for_floats_and_none_for_optional_paths():
    cfg = make_config(pseudo_weight=1, data_root=None, label_ratio=1)
    assert cfg.pseudo_weight == 1 and cfg.label_ratio == 1


def test_segmenter_config_checks_types_and_keys():
    with pytest.raises(ValueError, match="SegmenterConfig lr='fast' has type str"):
        SegmenterConfig.from_dict({"lr": "fast"})
    with pytest.raises(ValueError, match=r"unknown SegmenterConfig key\(s\) \['lrr'\]"):
        SegmenterConfig.from_dict({"lrr": 1e-3})
    assert SegmenterConfig.from_dict({"widths": [8, 16, 16, 16]}).widths[0] == 8


@pytest.mark.parametrize("override, key", [("env.update_interval=8.5", "update_interval"),
                                           ("env.grid_size=8.0", "grid_size"),
                                           ("segmenter.lr=fast", "lr")])
def test_dry_run_rejects_a_value_that_would_crash_after_the_warm_up(override, key, capsys):
    assert run_main(["--config", "smoke", "--dry-run", override]) == 2
    assert f"{key}=" in capsys.readouterr().err


def test_fits_and_describe_type():
    assert fits(3, float) and not fits(True, int) and fits(None, str | None) and fits([1], tuple)
    assert describe_type(str | None) == "a string or null"


@pytest.mark.parametrize("args, message", [
    (["--device", "tpu"], "config key 'device'='tpu' is unknown"),
    (["--seed", "-1"], "config key 'seed'=-1 must be >= 0"),
    (["--dataset", "refcoco", "--data-root", "."], "data_options ['num_eval', 'num_train'] are not "
                                                   "options of the refcoco loader"),
])
def test_dry_run_names_the_bad_runtime_key(args, message, capsys):
    assert run_main(["--config", "smoke", "--dry-run", *args]) == 2
    assert message in capsys.readouterr().err


def test_an_empty_table_clears_inherited_options(capsys):
    argv = ["--config", "smoke", "--dry-run", "--dataset", "refcoco", "--data-root", ".",
            "data_options={}"]
    assert run_main(argv) == 0
    assert "num_train" not in capsys.readouterr().out


def test_the_lr_warm_up_is_named_apart_from_the_burn_in(tmp_path):

    with pytest.raises(ValueError, match="'warmup_steps' is now 'lr_warmup_steps'"):
        SegmenterConfig.from_dict({"warmup_steps": 10})
    assert SegmenterConfig.from_saved({"warmup_steps": 10}).lr_warmup_steps == 10  # old checkpoints
    assert run_main(["--config", "smoke", "--dry-run", "segmenter.warmup_steps=5"]) == 2
