"""RunConfig: TOML files, KEY=VALUE overrides, validation errors, and a dry run of every shipped config."""

from __future__ import annotations

import json

import pytest

from experiments import config as C
from experiments.run import main as run_main


def test_the_builtin_default_run_is_the_defaults_file():
    assert C.load_config().to_dict() == C.load_config("default").to_dict()
    assert C.load_config().warmup_steps == 500  # the run's, over the env's default of none


def test_overrides_parse_toml_literals_and_dotted_keys():
    cfg = C.load_config(None, {"agent": "threshold"},
                        ["label_ratio=0.1", "env.update_interval=16", "segmenter.widths=[8,16,16,16]",
                         "agent_options.tau=0.95", "eval_splits=[\"val\"]", "prior=simulated/kosmos-2"])
    assert cfg.label_ratio == 0.1 and cfg.agent == "threshold"
    assert cfg.env == {"update_interval": 16}
    assert cfg.segmenter["widths"] == [8, 16, 16, 16]
    assert C.agent_kwargs(cfg) == {"tau": 0.95, "action_form": "construct"}
    assert cfg.eval_splits == ["val"]
    resolved = C.validate(cfg, check_paths=False)
    # the override is merged onto the env's own defaults, not replacing them
    assert resolved["env"]["update_interval"] == 16 and resolved["env"]["update_steps"] == 4
    assert resolved["prior_provider"] == "simulated" and resolved["prior_options"]["preset"] == "kosmos-2"
    assert resolved["out"] == "runs/synthref-threshold-10pct-s0"


def test_file_extends_a_base_and_flags_win(tmp_path):
    base = tmp_path / "base.toml"
    base.write_text('label_ratio = 0.1\nwarmup_steps = 7\n[env]\nupdate_steps = 3\n')
    top = tmp_path / "top.toml"
    top.write_text('extends = "base.toml"\nwarmup_steps = 9\n')
    cfg = C.load_config(top, {"seed": 3})
    assert (cfg.label_ratio, cfg.warmup_steps, cfg.seed, cfg.env["update_steps"]) == (0.1, 9, 3, 3)


@pytest.mark.parametrize("prior, provider, options", [
    ("simulated", "simulated", {"preset": "qwen2.5-vl-7b"}),
    ("cache/data/p.jsonl", "cache", {"path": "data/p.jsonl"}),
    ("mllm//models/qwen", "mllm", {"model": "/models/qwen"}),
    ("grounding_dino/models/gd", "grounding_dino", {"model": "models/gd"}),
    ("mm_grounding_dino/models/mm", "mm_grounding_dino", {"model": "models/mm"}),
    ("sam3/models/sam3", "sam3", {"model": "models/sam3"}),
])
def test_prior_specs(prior, provider, options):
    assert C.parse_prior(prior) == (provider, options)


@pytest.mark.parametrize("overrides, message", [
    (["foo=1"], "unknown config key 'foo'"),
    (["label_ratio=2"], "label_ratio"),
    (["label_ratio=abc"], "must be a number"),
    (["agent=nope"], "unknown agent 'nope'"),
    (["agent_options.tauu=0.9"], "tauu"),
    (["prior=oracle/x"], "unknown provider 'oracle'"),
    (["prior=simulated/gpt-9"], "unknown simulated preset"),
    (["env.update_interval=0"], "update_interval"),
    (["env.grid=8"], "unknown env config key"),
    (["env.dataset=refcoco"], "top-level key 'dataset'"),
    (["segmenter.widths=[1,2]"], "widths"),
    (["eval_splits=[\"test\"]"], "eval_splits"),
    (["label_ratio"], "KEY=VALUE"),
])
def test_bad_values_are_one_clear_error(overrides, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace("[", r"\[")):
        C.validate(C.load_config(None, None, overrides), check_paths=False)


def test_unknown_key_error_lists_valid_keys(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("lable_ratio = 0.1\n")
    with pytest.raises(ValueError) as err:
        C.load_config(bad)
    assert str(bad) in str(err.value) and "label_ratio" in str(err.value)


def test_refcoco_without_data_root_fails_before_any_work(tmp_path, capsys):
    assert run_main(["--dataset", "refcoco", "--out", str(tmp_path / "r")]) == 2
    assert "needs data_root" in capsys.readouterr().err
    assert run_main(["--dataset", "refcoco", "--data-root", str(tmp_path / "missing"),
                     "--out", str(tmp_path / "r")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_chunks_are_whole_env_updates_and_rollouts():
    cfg = C.load_config(None, None, ["env.update_interval=24", "agent_options.n_steps=16", "loop_steps=100"])
    assert C.loop_unit(cfg) == 48 and C.chunk_size(cfg) % 48 == 0 and C.loop_total(cfg) == 144
    sup = C.load_config(None, {"label_ratio": 1.0})
    assert C.loop_total(sup) == 0
    assert C.validate(sup, check_paths=False)["warmup_steps"] == sup.warmup_steps + sup.loop_steps // 32 * 4


@pytest.mark.parametrize("name", sorted(p.stem for p in C.CONFIG_DIR.glob("*.toml")))
def test_every_shipped_config_dry_runs(name, capsys):
    assert run_main(["--config", name, "--dry-run"]) == 0
    out = capsys.readouterr()
    resolved = json.loads(out.out)
    assert "config valid" in out.err
    assert resolved["resolved"]["env"]["grid_size"] >= 1
    if name.startswith("refcoco"):
        dataset = name.split("_")[0]
        assert resolved["dataset"] == dataset
        assert resolved["segmenter"]["image_size"] == 480
        assert resolved["segmenter"]["backbone"] == "hf:models/swin-base-patch4-window12-384"
        assert resolved["segmenter"]["text_encoder"].endswith("bert-base-uncased")
        assert resolved["resolved"]["prior_provider"] == "cache"
        if "pct" in name:
            assert resolved["label_ratio"] == {"1pct": 0.01, "5pct": 0.05, "10pct": 0.1}[name.split("_")[1]]


def test_agent_option_tables_apply_to_their_agent_only():
    overrides = ["agent_options.l2l.n_steps=16", "agent_options.threshold.tau=0.8"]
    thr = C.load_config(None, {"agent": "threshold"}, overrides)
    assert C.agent_kwargs(thr) == {"tau": 0.8, "action_form": "construct"}
    l2l = C.load_config(None, {"agent": "l2l"}, overrides)
    assert C.agent_kwargs(l2l)["n_steps"] == 16 and "tau" not in C.agent_kwargs(l2l)
    assert C.rollout_length(l2l) == 16 and C.rollout_length(thr) == 1
    C.validate(thr, check_paths=False)


def test_quoted_dotted_keys_reach_family_agents():
    cfg = C.load_config(None, {"agent": "sb3:ppo"}, ['agent_options."sb3:ppo".n_steps=16',
                                                     "agent_options.sb3:ppo.batch_size=8"])
    kwargs = C.agent_kwargs(cfg)
    assert kwargs["n_steps"] == 16 and kwargs["batch_size"] == 8 and C.rollout_length(cfg) == 16
