"""The typed configuration of one full run (:class:`RunConfig`): TOML files, ``KEY=VALUE``
overrides, validation of every part before any long work, and the resolved form that is written
into each run's output.

Precedence, lowest first: the dataclass defaults (the built-in default run), a TOML file (which may
name another file to start from with ``extends = "other.toml"``), command-line flags, then
``KEY=VALUE`` overrides. Dotted keys reach into the dict fields (``env.update_interval=16``,
``segmenter.widths=[8,16,16,16]``, ``agent_options.n_steps=32``); values are TOML literals
(``0.1``, ``true``, ``[1, 2]``, ``"text"``) and anything else is taken as a plain string.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
import re
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from gymnasium import spaces

import agents
from agents import Agent
from l2l_env.cli_utils import parse_value
from l2l_env.config import SEED_LIMIT, EnvConfig, SharedSettings, make_config
from l2l_env.data import DATASETS, SPLITS, check_options
from l2l_env.labels import action_space
from l2l_env.priors import PRESETS, PROVIDERS
from l2l_env.priors.simulated import DEFAULT_PRESET
from l2l_env.warmup import warmup_key as warmup_hash
from segmenter.config import SegmenterConfig
from segmenter.shared.typed import describe_type, fits

CONFIG_DIR = Path(__file__).with_name("configs")
"""Where the shipped configs live (``--config NAME`` finds ``NAME.toml`` here)."""
DEFAULT_RUN = CONFIG_DIR / "default.toml"
"""The built-in default run: the lowest layer of every config (:func:`load_config`)."""
DICT_FIELDS = ("data_options", "agent_options", "prior_options", "env", "segmenter")
RUNTIME_KEYS = frozenset({"device", "threads", "progress", "out", "eval_batch", "log_images",
                          "warmup_cache", "num_workers"})
"""Keys that may change when a run is resumed (they change how, not what, it computes)."""
@dataclass
class RunConfig(SharedSettings):
    """Everything one ``l2l-run`` does. It holds the env's, the segmenter's and the agent's
    configs as sub-tables (``env``, ``segmenter``, ``agent_options``: overrides of their own
    defaults) and shares the settings both it and the env have (:class:`SharedSettings`: data,
    warm-up, seed, device, caches), so each default is written once. The built-in default run
    (SynthRef, 5% labels, the ``l2l`` agent, budgeted to finish in about 15 minutes on a 2-core
    CPU) is ``configs/default.toml``, the lowest layer of :func:`load_config`.

    Data: ``dataset``, ``data_root`` (RefCOCO: the refer data root; SynthRef: where the generated
    data set is cached, default ``cache_dir``), ``data_options`` (loader options, e.g.
    ``{num_train = 2000}`` for SynthRef), ``label_ratio`` (fraction of labeled train images; 1.0
    is the fully supervised run: no self-evolving loop), ``split_seed``, ``split_dir`` (published
    split files ``{dataset}_{pct}%_image.json`` are read from and written to it).

    Agent and priors: ``agent`` (a name of :func:`agents.available`, e.g. ``l2l``, ``threshold``,
    ``sb3:ppo``), ``agent_options`` (its keyword arguments; a table named after an agent holds
    that agent's options only, e.g. ``[agent_options.l2l]``, so one config serves every agent of an
    ablation), ``prior`` (``PROVIDER/ARG``:
    ``simulated/<preset>``, ``cache/<file>``, ``mllm/<model dir>``, ``grounding_dino/<model dir>``,
    ``mm_grounding_dino/<model dir>``, ``sam3/<model dir>``), ``prior_options`` (extra
    provider arguments, e.g. ``{batch_size = 4}``).

    Schedule: ``warmup_steps`` supervised optimiser steps of batch ``warmup_batch`` on the labeled
    split; ``loop_steps`` env steps (unlabeled samples) of the self-evolving loop, rounded up to a
    whole number of checkpoint units; ``chunk_steps`` env steps between checkpoints (0: about 256,
    a multiple of the env's ``update_interval`` and the agent's rollout length);
    ``checkpoint_every`` warm-up steps between checkpoints.

    Evaluation: ``eval_splits`` (empty: every evaluation split of the data set), ``eval_batch``,
    ``eval_every`` (env steps between quick evaluations of ``eval_subset`` samples of the first
    split for TensorBoard; 0: none), ``log_images`` (samples with prior/prediction/selection
    overlays written to TensorBoard per evaluation).

    Parts: ``env`` (overrides of :class:`l2l_env.config.EnvConfig`, e.g. ``update_interval``),
    ``segmenter`` (overrides of :class:`segmenter.SegmenterConfig`).

    Runtime: ``seed``, ``out`` (default ``runs/<dataset>-<agent>-<pct>pct-s<seed>``), ``device``
    (``cpu``, ``cuda``, ``cuda:1``), ``threads`` (torch CPU threads), ``num_workers`` (worker
    processes that assemble training batches; 0: the main process, same batches either way), ``cache_dir`` (data/prior
    cache; default ``$L2L_CACHE_DIR`` or ``~/.cache/l2l``), ``warmup_cache`` (a folder where
    warmed-up segmenters are kept by a hash of everything the warm-up depends on, so the runs of an
    ablation that share a label ratio and seed warm up once; the result is the same either way),
    ``progress`` (progress bars).
    """

    agent: str = "l2l"
    agent_options: dict[str, Any] = field(default_factory=dict)
    prior: str = f"simulated/{DEFAULT_PRESET}"
    loop_steps: int = 3072
    chunk_steps: int = 0
    checkpoint_every: int = 100
    eval_splits: list[str] = field(default_factory=list)
    eval_batch: int = 256
    eval_every: int = 1024
    eval_subset: int = 200
    log_images: int = 4
    env: dict[str, Any] = field(default_factory=dict)
    out: str | None = None
    threads: int = 2
    progress: bool = True

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable copy."""
        return json.loads(json.dumps(dataclasses.asdict(self)))


# ----------------------------------------------------------------------------- field types

def _field_types() -> dict[str, Any]:
    return typing.get_type_hints(RunConfig)


def _check_type(key: str, value: Any, where: str) -> Any:
    """``value`` converted to the type of field ``key`` (ints are accepted for floats)."""
    tp = _field_types()[key]
    if not fits(value, tp):
        raise ValueError(f"config key {key!r}{where} must be {describe_type(tp)}, got {value!r}")
    if isinstance(value, (dict, list)):
        return copy.deepcopy(value)
    if isinstance(value, tuple):
        return list(value)
    if float in typing.get_args(tp) + (tp,) and not isinstance(value, bool) and isinstance(value, int):
        return float(value)
    return value


def valid_keys() -> list[str]:
    return [f.name for f in dataclasses.fields(RunConfig)]


def _unknown(key: str, where: str) -> ValueError:
    return ValueError(f"unknown config key {key!r}{where}; valid keys: {', '.join(valid_keys())}")


# ----------------------------------------------------------------------------- files and overrides

def find_config(name: str | os.PathLike) -> Path:
    """``name`` as a file, or a shipped config (``default``, ``refcoco_5`` ...)."""
    path = Path(name)
    if path.is_file():
        return path
    shipped = CONFIG_DIR / (path.name if path.suffix == ".toml" else f"{path.name}.toml")
    if shipped.is_file() and len(path.parts) == 1:
        return shipped
    known = sorted(p.stem for p in CONFIG_DIR.glob("*.toml"))
    raise FileNotFoundError(f"config file {str(name)!r} does not exist (shipped configs: "
                            f"{', '.join(known)})")


def read_toml(path: str | os.PathLike, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """The settings of a TOML config file, with ``extends = "base.toml"`` resolved (relative to
    the file); errors name the file."""
    path = find_config(path).resolve()
    if path in _seen:
        raise ValueError(f"config {path}: 'extends' forms a cycle through {[str(p) for p in _seen]}")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as err:
        raise ValueError(f"config file {path} is not valid TOML: {err}") from None
    base = data.pop("extends", None)
    if base is None:
        return data
    if not isinstance(base, str):
        raise ValueError(f"config {path}: 'extends' must be a file name string, got {base!r}")
    base_path = Path(base) if Path(base).is_absolute() else path.parent / base
    merged = read_toml(base_path if base_path.is_file() else base, _seen + (path,))
    return deep_merge(merged, data)


def deep_merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    """``top`` over ``base``; nested dicts merge key by key."""
    out = copy.deepcopy(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _key_path(key: str) -> list[str]:
    """``a.b."sb3:ppo".c`` -> ``["a", "b", "sb3:ppo", "c"]`` (TOML dotted keys; quotes optional
    where TOML would need them)."""
    try:
        node: Any = tomllib.loads(f"{key} = 0")
    except tomllib.TOMLDecodeError:
        return key.split(".")
    path = []
    while isinstance(node, dict) and len(node) == 1:
        k = next(iter(node))
        path.append(k)
        node = node[k]
    return path


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``["a=1", "env.update_interval=16"]`` -> a nested dict of settings."""
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ValueError(f"override {item!r} must be KEY=VALUE (e.g. label_ratio=0.1 or "
                             f"env.update_interval=16)")
        key, text = item.split("=", 1)
        parts = _key_path(key.strip())
        if not all(parts):
            raise ValueError(f"override {item!r}: bad key {key!r}")
        if parts[0] not in valid_keys():
            raise _unknown(parts[0], f" (in override {item!r})")
        if len(parts) > 1 and parts[0] not in DICT_FIELDS:
            raise ValueError(f"override {item!r}: {parts[0]!r} is not a table; dotted keys work for "
                             f"{', '.join(DICT_FIELDS)}")
        node = out
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ValueError(f"override {item!r} conflicts with an earlier override of {p!r}")
        node[parts[-1]] = parse_value(text)
    return out


def from_dict(settings: dict[str, Any], base: RunConfig | None = None, where: str = "") -> RunConfig:
    """``base`` (default: the defaults) with ``settings`` applied; dict fields merge key by key.

    Unknown keys and values of the wrong type raise ``ValueError`` naming the key and ``where``.
    """
    cfg = copy.deepcopy(base) if base is not None else RunConfig()
    known = set(valid_keys())
    for key, value in settings.items():
        if key not in known:
            raise _unknown(key, where)
        if key in DICT_FIELDS and isinstance(value, dict) and value == {}:
            setattr(cfg, key, {})  # an empty table clears what came before
        elif key in DICT_FIELDS and isinstance(value, dict):
            current = getattr(cfg, key)
            setattr(cfg, key, deep_merge(current, value))
        else:
            setattr(cfg, key, _check_type(key, value, where))
    return cfg


def load_config(file: str | os.PathLike | None = None, flags: dict[str, Any] | None = None,
                overrides: list[str] | None = None, base: RunConfig | None = None) -> RunConfig:
    """The built-in default run (``configs/default.toml``; or ``base``) <- TOML ``file`` <-
    ``flags`` (non-None values) <- ``KEY=VALUE``."""
    if base is None:
        base = from_dict(read_toml(DEFAULT_RUN), where=f" in {DEFAULT_RUN}")
    cfg = base
    if file is not None:
        path = find_config(file)
        cfg = from_dict(read_toml(path), cfg, where=f" in {path}")
    if flags:
        cfg = from_dict({k: v for k, v in flags.items() if v is not None}, cfg, where=" (flag)")
    if overrides:
        cfg = from_dict(parse_overrides(overrides), cfg, where=" (override)")
    return cfg


# ----------------------------------------------------------------------------- resolution

def parse_prior(spec: str, options: dict[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
    """``"simulated/PRESET"`` -> ``("simulated", {"preset": PRESET})``; ``"cache/FILE"`` ->
    ``("cache", {"path": FILE})``; ``"mllm/DIR"`` (or ``grounding_dino/DIR``,
    ``mm_grounding_dino/DIR``, ``sam3/DIR``) -> ``("mllm", {"model": DIR})``."""
    provider, _, arg = spec.partition("/")
    if provider not in PROVIDERS:
        raise ValueError(f"prior {spec!r}: unknown provider {provider!r}; expected PROVIDER/ARG with "
                         f"PROVIDER one of {sorted(PROVIDERS)} (e.g. simulated/{DEFAULT_PRESET}, "
                         f"cache/priors.jsonl, mllm/models/Qwen2.5-VL-7B)")
    key = PROVIDERS[provider].arg
    if provider == "simulated":
        arg = arg or DEFAULT_PRESET
        if arg not in PRESETS:
            raise ValueError(f"prior {spec!r}: unknown simulated preset {arg!r}; expected one of "
                             f"{sorted(PRESETS)}")
    elif not arg:
        what = "a prior cache file" if key == "path" else "a local model folder"
        raise ValueError(f"prior {spec!r}: {provider}/ needs {what}, e.g. {provider}/PATH")
    kwargs: dict[str, Any] = {key: arg}
    kwargs.update(options or {})
    return provider, kwargs


def percent(ratio: float) -> str:
    """``0.05 -> '5'``, ``0.005 -> '0.5'``."""
    return f"{ratio * 100:.4f}".rstrip("0").rstrip(".")


def default_out(cfg: RunConfig) -> str:
    agent = "supervised" if cfg.label_ratio >= 1.0 else cfg.agent.replace(":", "_").replace("/", "_")
    return os.path.join("runs", f"{cfg.dataset}-{agent}-{percent(cfg.label_ratio)}pct-s{cfg.seed}")


def eval_splits(cfg: RunConfig) -> list[str]:
    return list(cfg.eval_splits) or [s for s in SPLITS[cfg.dataset] if s != "train"]


def agent_kwargs(cfg: RunConfig) -> dict[str, Any]:
    """The agent's keyword arguments: ``agent_options`` plus the run's seed and device where the
    agent takes them, and a rollout length that fits the checkpoint chunks for SB3 on-policy
    algorithms (SB3's default of 2048 steps would overshoot short loops)."""
    cls = agents.agent_class(cfg.agent)

    def names_an_agent(key: str) -> bool:
        try:
            agents.agent_class(key)
            return True
        except KeyError:
            return False

    per_agent = {k: v for k, v in cfg.agent_options.items() if isinstance(v, dict) and names_an_agent(k)}
    kwargs = {k: v for k, v in cfg.agent_options.items() if k not in per_agent}
    kwargs.update(copy.deepcopy(per_agent.get(cfg.agent, {})))
    accepted = cls.option_names()
    if "seed" in accepted:
        kwargs.setdefault("seed", cfg.seed)
    if "device" in accepted:
        kwargs.setdefault("device", cfg.device)
    if "action_form" in accepted:  # the agent speaks the env's action form
        kwargs.setdefault("action_form", cfg.env.get("action", EnvConfig.action))
    for key, value in cls.run_defaults(cfg.agent, kwargs).items():
        kwargs.setdefault(key, value)
    return kwargs


def rollout_length(cfg: RunConfig) -> int:
    """Env steps per learning update of the agent (1 for heuristics)."""
    return agents.agent_class(cfg.agent).rollout_length(cfg.agent, agent_kwargs(cfg))


def run_keys() -> dict[str, str]:
    """The env settings the run sets from its own keys, each with the run key that sets it: the
    settings both configs share (:class:`SharedSettings`) and those whose field names its run key
    (``metadata["run_key"]``); not allowed under ``env.``."""
    shared = {f.name for f in dataclasses.fields(SharedSettings)}
    return {f.name: f.metadata.get("run_key", f.name) for f in dataclasses.fields(EnvConfig)
            if f.name in shared or "run_key" in f.metadata}


def env_kwargs(cfg: RunConfig, agent_label_source: str | None = None) -> dict[str, Any]:
    """The :class:`l2l_env.config.EnvConfig` settings of the run: the shared settings from the
    run, the ``env`` table for the rest. The run does the warm-up itself (``warmup_steps`` 0)."""
    owned = run_keys()
    bad = sorted(set(cfg.env) & set(owned))
    if bad:
        raise ValueError(f"env.{bad[0]} is set by the run; use the top-level key "
                         f"{owned[bad[0]]!r} instead")
    provider, prior_opts = parse_prior(cfg.prior, cfg.prior_options)
    kwargs: dict[str, Any] = {f.name: copy.deepcopy(getattr(cfg, f.name))
                              for f in dataclasses.fields(SharedSettings)}
    kwargs.update({
        "label_ratio": min(cfg.label_ratio, 1.0), "prior_provider": provider,
        "prior_options": prior_opts, "segmenter": segmenter_kwargs(cfg), "warmup_steps": 0,
        "warmup_cache": None, "progress_horizon": max(1, loop_total(cfg)),
        "object_attributes": cfg.resolved_object_attributes(),
    })
    if agent_label_source is not None:
        kwargs["label_source"] = agent_label_source
    if agents.agent_class(cfg.agent).needs_truth:  # analysis-only oracle: info["oracle"] says so
        kwargs["oracle_obs"] = True
    kwargs.update(copy.deepcopy(cfg.env))
    return kwargs


def segmenter_kwargs(cfg: RunConfig) -> dict[str, Any]:
    """The :class:`segmenter.SegmenterConfig` settings; the schedule's ``total_steps`` defaults
    to every optimiser step of the run (:func:`supervised_steps`)."""
    return {"device": cfg.device, "seed": cfg.seed, "total_steps": max(1, supervised_steps(cfg)),
            **copy.deepcopy(cfg.segmenter)}


def _update_interval(cfg: RunConfig) -> int:
    return int(cfg.env.get("update_interval", EnvConfig.update_interval))


def loop_unit(cfg: RunConfig) -> int:
    """The smallest chunk at which the loop can be checkpointed exactly: a multiple of the env's
    ``update_interval`` (fresh predictions) and of the agent's rollout length (whole updates)."""
    return math.lcm(max(1, _update_interval(cfg)), max(1, rollout_length(cfg)))


def chunk_size(cfg: RunConfig) -> int:
    """Env steps per checkpointed chunk (a multiple of :func:`loop_unit`; the last chunk of a
    loop may be shorter, still a multiple of the unit)."""
    unit = loop_unit(cfg)
    want = cfg.chunk_steps or 256
    return unit * max(1, math.ceil(want / unit) if cfg.chunk_steps else round(want / unit))


def loop_total(cfg: RunConfig) -> int:
    """``loop_steps`` rounded up to a whole number of :func:`loop_unit` (0 when fully supervised)."""
    if cfg.label_ratio >= 1.0 or cfg.loop_steps == 0:
        return 0
    unit = loop_unit(cfg)
    return unit * math.ceil(cfg.loop_steps / unit)


def supervised_steps(cfg: RunConfig) -> int:
    """Optimiser steps of the fully supervised run: the warm-up plus as many steps as the loop's
    segmenter updates take in a semi-supervised run of the same config."""

    upd = int(cfg.env.get("update_steps", EnvConfig.update_steps))
    return cfg.warmup_steps + math.ceil(cfg.loop_steps / max(1, _update_interval(cfg))) * upd


def validate(cfg: RunConfig, check_paths: bool = True) -> dict[str, Any]:
    """Check every value (and, with ``check_paths``, every path and device) before any long work;
    returns the resolved parts (env config, segmenter config, prior provider, schedule).

    Raises ``ValueError`` / ``FileNotFoundError`` naming the key or path at fault.
    """
    if cfg.dataset not in DATASETS:
        raise ValueError(f"config key 'dataset'={cfg.dataset!r} is unknown; expected one of "
                         f"{sorted(DATASETS)}")
    if cfg.dataset != "synthref" and not cfg.data_root:
        raise ValueError(f"{cfg.dataset} needs data_root (--data-root DIR): the refer data root with "
                         f"{cfg.dataset}/instances.json and {cfg.dataset}/refs(...).p")
    check_options(cfg.dataset, cfg.data_options)
    if not re.fullmatch(r"cpu|cuda(:\d+)?|mps", cfg.device):
        raise ValueError(f"config key 'device'={cfg.device!r} is unknown; expected 'cpu', 'cuda', "
                         "'cuda:<index>' or 'mps'")
    for key in ("seed", "split_seed"):
        value = getattr(cfg, key)
        if not 0 <= value < SEED_LIMIT:
            bound = "must be >= 0" if value < 0 else f"must be < {SEED_LIMIT} (2**32)"
            raise ValueError(f"config key {key!r}={value} {bound}")
    if not 0.0 < cfg.label_ratio <= 1.0:
        raise ValueError(f"config key 'label_ratio'={cfg.label_ratio!r} must be in (0, 1] "
                         f"(0.05 = 5% labeled train images; 1.0 = fully supervised)")
    for key in ("warmup_steps", "loop_steps", "chunk_steps", "eval_every", "log_images",
                "checkpoint_every", "num_workers"):
        if getattr(cfg, key) < 0:
            raise ValueError(f"config key {key!r}={getattr(cfg, key)} must be >= 0")
    for key in ("warmup_batch", "eval_batch", "threads", "eval_subset"):
        if getattr(cfg, key) < 1:
            raise ValueError(f"config key {key!r}={getattr(cfg, key)} must be >= 1")
    bad_splits = [s for s in cfg.eval_splits if s not in SPLITS[cfg.dataset] or s == "train"]
    if bad_splits:
        raise ValueError(f"config key 'eval_splits' has {bad_splits}; {cfg.dataset} evaluation splits "
                         f"are {[s for s in SPLITS[cfg.dataset] if s != 'train']}")
    try:
        agent_cls = agents.agent_class(cfg.agent)
    except KeyError as err:
        raise ValueError(f"config key 'agent'={cfg.agent!r}: {err.args[0]}") from None
    provider, prior_opts = parse_prior(cfg.prior, cfg.prior_options)
    try:
        seg_cfg = SegmenterConfig.from_dict(segmenter_kwargs(cfg))
    except (TypeError, ValueError) as err:
        raise ValueError(f"config key 'segmenter': {err}") from None
    try:
        env_cfg = make_config(env_kwargs(cfg, agent_cls.preferred_label_source))
    except (TypeError, ValueError) as err:
        raise ValueError(f"config key 'env': {err}") from None
    check_agent(cfg, agent_cls, action_space(env_cfg.action, env_cfg.grid_size))
    if seg_cfg.image_size % env_cfg.grid_size:
        raise ValueError(f"env.grid_size={env_cfg.grid_size} must divide segmenter.image_size="
                         f"{seg_cfg.image_size}")
    if check_paths:
        check_paths_exist(cfg, provider, prior_opts, seg_cfg)
    return {
        "env": env_cfg.to_dict(), "segmenter": seg_cfg.to_dict(), "prior_provider": provider,
        "prior_options": prior_opts, "eval_splits": eval_splits(cfg),
        "mode": "supervised" if cfg.label_ratio >= 1.0 else "semi-supervised",
        "loop_unit": loop_unit(cfg) if cfg.label_ratio < 1.0 else 0,
        "chunk_steps": chunk_size(cfg) if cfg.label_ratio < 1.0 else 0,
        "loop_steps": loop_total(cfg),
        "warmup_steps": supervised_steps(cfg) if cfg.label_ratio >= 1.0 else cfg.warmup_steps,
        "agent_kwargs": json.loads(json.dumps(agent_kwargs(cfg), default=str)),
        "label_source": env_cfg.label_source,
        "out": cfg.out or default_out(cfg),
    }


def check_agent(cfg: RunConfig, agent_cls: type[Agent], space: spaces.Space) -> None:
    """Refuse, from the config alone, an agent that cannot act in the env's action ``space`` or
    options it does not take (the agent's class says which: :meth:`Agent.check_action_space`,
    :meth:`Agent.check_options`)."""
    kwargs = agent_kwargs(cfg)
    if str(kwargs.get("device", "cpu")).startswith("cuda"):
        kwargs["device"] = "cpu"  # checks the options; the device is checked with the paths
    try:
        agent_cls.check_action_space(cfg.agent, kwargs, space)
    except KeyError as err:
        raise ValueError(f"config key 'agent'={cfg.agent!r}: {err.args[0]}") from None
    except ValueError as err:
        form = cfg.env.get("action", EnvConfig.action)
        raise ValueError(f"config key 'agent'={cfg.agent!r} cannot run on env.action={form!r}: "
                         f"{err.args[0]}") from None
    try:
        agent_cls.check_options(cfg.agent, kwargs)
    except (TypeError, ValueError, KeyError) as err:
        raise ValueError(f"config key 'agent_options' for agent {cfg.agent!r}: "
                         f"{err.args[0] if err.args else err}") from None


def missing_paths(cfg: RunConfig, provider: str, prior_opts: dict[str, Any],
                  seg_cfg: SegmenterConfig
                  ) -> list[str]:
    """Human-readable problems with the paths and devices a run would read (empty: all there)."""
    problems = []
    if cfg.dataset != "synthref" and cfg.data_root:
        ann = Path(cfg.data_root) / cfg.dataset / "instances.json"
        if not Path(cfg.data_root).is_dir():
            problems.append(f"data_root {cfg.data_root!r} does not exist")
        elif not ann.is_file():
            problems.append(f"data_root {cfg.data_root!r} has no {cfg.dataset}/instances.json "
                            f"(expected the refer layout)")
    if provider == "cache" and not Path(prior_opts["path"]).is_file():
        problems.append(f"prior cache file {prior_opts['path']!r} does not exist (compute it with "
                        f"l2l-priors compute --out FILE)")
    if "model" in prior_opts and not Path(prior_opts["model"]).is_dir():
        problems.append(f"{provider} model folder {prior_opts['model']!r} does not exist")
    if seg_cfg.text_encoder != "minilm" and not Path(seg_cfg.text_encoder).is_dir():
        problems.append(f"segmenter.text_encoder {seg_cfg.text_encoder!r} is not a local model folder")
    if seg_cfg.backbone.startswith("hf:"):
        folder = Path(seg_cfg.backbone.split(":", 1)[1])
        if not (folder / "config.json").is_file():
            problems.append(f"segmenter.backbone {seg_cfg.backbone!r}: {folder / 'config.json'} does "
                            "not exist (a transformers checkpoint folder)")
    if seg_cfg.backbone_weights and not Path(seg_cfg.backbone_weights).is_file():
        problems.append(f"segmenter.backbone_weights {seg_cfg.backbone_weights!r} does not exist")
    if cfg.split_dir and Path(cfg.split_dir).exists() and not Path(cfg.split_dir).is_dir():
        problems.append(f"split_dir {cfg.split_dir!r} is not a folder")
    if cfg.device.startswith("cuda"):
        if not torch.cuda.is_available():
            problems.append(f"device {cfg.device!r} but CUDA is not available on this machine")
    return problems


def check_paths_exist(cfg: RunConfig, provider: str, prior_opts: dict[str, Any], seg_cfg: Any) -> None:
    problems = missing_paths(cfg, provider, prior_opts, seg_cfg)
    if problems:
        raise FileNotFoundError("; ".join(problems))


def warmup_key(cfg: RunConfig, resolved: dict[str, Any]) -> str:
    """A hash of everything the supervised warm-up's result depends on."""
    return warmup_hash(resolved["env"], resolved["segmenter"], resolved["warmup_steps"], cfg.warmup_batch,
               cfg.seed)


def resolved_dict(cfg: RunConfig, resolved: dict[str, Any]) -> dict[str, Any]:
    """The config as written to ``config.json`` and ``results.json``: the settings as given plus
    what they resolve to."""
    out = cfg.to_dict()
    out["out"] = resolved["out"]
    out["resolved"] = json.loads(json.dumps(resolved, default=str))
    return out


def differences(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """Top-level keys (runtime keys excluded) whose values differ between two config dicts."""
    keys = (set(saved) | set(current)) - RUNTIME_KEYS - {"resolved"}
    return sorted(k for k in keys if saved.get(k) != current.get(k))
