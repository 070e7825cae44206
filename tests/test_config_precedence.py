"""Config precedence end to end: defaults < TOML file < command-line flags < ``KEY=VALUE``
overrides, through ``load_config`` and through ``l2l-run --dry-run --json`` (and, on
``--resume``, the run's saved config.json below the file)."""

from __future__ import annotations

import json

import pytest

from experiments import config as C
from experiments.run import main as run_main

FILE = """
label_ratio = 0.1              # file, then a flag
seed = 5                       # file, then a flag, then an override
agent = "threshold"            # file only (default: l2l)
warmup_steps = 7               # file only (default: 500)
prior = "simulated/kosmos-2"   # file, then a flag
[env]
update_steps = 3               # file, then an override
labeled_batch = 8              # file only; update_interval stays the default
[segmenter]
lr = 0.01                      # file only
"""
FLAGS = {"label_ratio": 0.2, "seed": 6, "prior": "simulated/perfect", "agent": None}
OVERRIDES = ["seed=7", "env.update_steps=5"]


@pytest.fixture
def config_file(tmp_path):
    path = tmp_path / "exp.toml"
    path.write_text(FILE)
    return path


def _check(cfg: dict) -> None:
    """``cfg``: a RunConfig as a dict (``to_dict`` / the dry run's JSON)."""
    default = C.RunConfig()
    assert cfg["label_ratio"] == 0.2  # flag over file
    assert cfg["seed"] == 7  # override over flag over file
    assert cfg["prior"] == "simulated/perfect"  # flag over file
    assert cfg["agent"] == "threshold" and cfg["warmup_steps"] == 7  # file over defaults
    # tables merge key by key: the defaults' keys, then the file's, then the override's
    assert cfg["env"] == {**default.env, "update_steps": 5, "labeled_batch": 8}
    assert cfg["segmenter"] == {"lr": 0.01}
    assert cfg["loop_steps"] == default.loop_steps and cfg["threads"] == default.threads


def _check_resolved(resolved: dict) -> None:
    """The parts built from the config see the winning values too."""
    env = resolved["env"]
    got = (env["label_ratio"], env["seed"], env["update_steps"], env["labeled_batch"])
    assert got == (0.2, 7, 5, 8)
    default_env = C.validate(C.RunConfig(), check_paths=False)["env"]
    assert env["update_interval"] == default_env["update_interval"]
    assert resolved["prior_provider"] == "simulated"
    assert resolved["prior_options"]["preset"] == "perfect"
    assert resolved["segmenter"]["lr"] == 0.01 and resolved["segmenter"]["seed"] == 7
    assert resolved["out"].endswith("synthref-threshold-20pct-s7")


def test_each_layer_beats_the_one_below_in_load_config(config_file):
    defaults = C.load_config()
    assert (defaults.agent, defaults.warmup_steps) != ("threshold", 7)  # the file must matter
    from_file = C.load_config(config_file)
    assert (from_file.label_ratio, from_file.seed, from_file.env["update_steps"]) == (0.1, 5, 3)
    with_flags = C.load_config(config_file, FLAGS)
    assert (with_flags.label_ratio, with_flags.seed, with_flags.agent) == (0.2, 6, "threshold")
    cfg = C.load_config(config_file, FLAGS, OVERRIDES)
    _check(cfg.to_dict())
    _check_resolved(C.validate(cfg, check_paths=False))


def test_cli_dry_run_applies_the_same_precedence_whatever_the_argument_order(config_file, capsys):
    argv = [*OVERRIDES[:1], "--config", str(config_file), "--label-ratio", "0.2", "--seed", "6",
            "--prior", "simulated/perfect", *OVERRIDES[1:], "--dry-run", "--json"]
    assert run_main(argv) == 0
    printed = json.loads(capsys.readouterr().out)
    _check(printed)
    _check_resolved(printed["resolved"])


def test_resume_starts_from_the_saved_config_below_file_flags_and_overrides(config_file, tmp_path,
                                                                           capsys):
    out = tmp_path / "run"
    out.mkdir()
    saved = C.RunConfig(agent="random", warmup_steps=11, loop_steps=64, seed=1, label_ratio=0.3,
                        env={"update_interval": 16, "update_steps": 2, "labeled_batch": 4})
    (out / "config.json").write_text(json.dumps({**saved.to_dict(), "resolved": {}}))

    assert run_main(["--out", str(out), "--resume", "--dry-run", "--seed", "6", "seed=7"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert (got["agent"], got["warmup_steps"], got["loop_steps"], got["label_ratio"]) == \
        ("random", 11, 64, 0.3)  # the saved run, not the defaults
    assert got["seed"] == 7 and got["out"] == str(out)

    argv = ["--config", str(config_file), "--out", str(out), "--resume", "--dry-run",
            "--label-ratio", "0.2", "--seed", "6", "--prior", "simulated/perfect", *OVERRIDES]
    assert run_main(argv) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["loop_steps"] == 64  # saved, untouched by the file
    assert got["agent"] == "threshold" and got["warmup_steps"] == 7  # file over saved
    assert got["label_ratio"] == 0.2 and got["seed"] == 7  # flags, overrides on top
    assert got["env"] == {"update_interval": 16, "update_steps": 5, "labeled_batch": 8}
