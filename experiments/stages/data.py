"""The data stage: every split's table and priors, the segmenter (with its phrase features),
the labeled bank and, for a semi-supervised run, the env of the loop. Everything that can fail on
a bad data root or a corrupt cache fails here, before any long work.

Exact resume: the data, the priors, the env's banks and the phrase features are rebuilt
identically on every start (the phrases are encoded once up front in a fixed order, so their
batching never depends on where a run stopped: held in memory, or for more phrases than the text
cache holds, in a packed store read per batch).
"""

from __future__ import annotations

from tqdm.auto import tqdm

from experiments import distributed as D
from experiments.recorder import StepRecorder
from experiments.stages.base import RunContext, RunParts
from l2l_env.config import EnvConfig, make_config
from l2l_env.data import RefSplit
from l2l_env.env import PseudoLabelEnv
from l2l_env.evaluation import EvalSplit
from l2l_env.factory import build_segmenter, segmenter_config
from l2l_env.loop_data import load_loop_data, load_supervised_bank, load_table_of
from l2l_env.priors import load_priors
from l2l_env.text_store import StoredTextEncoder, phrase_features, text_feature_store
from l2l_env.warmup import warmup_cache, warmup_key

TEXT_BATCH = 1024
"""Phrases encoded per batch when a run encodes every phrase up front."""


def env_config(run: RunContext) -> EnvConfig:
    """The run's env config on this process's device."""
    env = dict(run.resolved["env"])
    env["device"] = run.device
    env["segmenter"] = {**env["segmenter"], "device": run.device}
    return make_config(env)


def build_parts(run: RunContext) -> RunParts:
    """Load the data and priors, then build the segmenter, the banks and (with a loop) the env,
    shard and wrap them for DDP, and encode every phrase once."""
    env_cfg = env_config(run)
    info: dict[str, int | str] = {}
    with run.timed("data_priors"):
        table, priors, eval_data, phrases = _load_splits(run, env_cfg, info)
    with run.timed("setup"):
        seg_cfg = segmenter_config(env_cfg, table)
        stored = (seg_cfg.use_text and seg_cfg.freeze_text
                  and len(phrases) > int(seg_cfg.text_cache_size))
        encoder = None
        if stored:  # more phrases than the text cache holds: features from a packed store
            encoder = StoredTextEncoder(seg_cfg.text_encoder, frozen=True,
                                        max_tokens=seg_cfg.max_tokens,
                                        cache_size=seg_cfg.text_cache_size)
        segmenter = build_segmenter(env_cfg, text_encoder=encoder, table=table)
        if encoder is not None:
            with run.timed("text_store"):
                store = text_feature_store(encoder, phrases, env_cfg.cache_dir, segmenter.device)
            encoder.attach(store)
            info["text_features"] = f"read per batch from {store.path}"
        size = int(segmenter.config.image_size)
        swap = segmenter.config.prior_swap > 0
        env = recorder = None
        if run.has_loop:
            data = load_loop_data(env_cfg, size, table=table, priors=priors, distractors=swap)
            data, info["shard"] = D.shard_data(data, run.ctx)
            # from its loaded parts: the recorder is the only wrapper between agent and env
            env = PseudoLabelEnv.from_parts(segmenter, data, config=env_cfg)
            recorder = StepRecorder(env, keep_actions=max(4, run.cfg.log_images))
            loop_env = env.unwrapped
            bank = loop_env.labeled
            info.update(labeled_samples=len(loop_env.labeled), probe_samples=len(loop_env.probe),
                        unlabeled_samples=len(loop_env.unlabeled),
                        labeled_images=len(loop_env.label_split.labeled),
                        unlabeled_images=len(loop_env.label_split.unlabeled))
        else:
            bank = load_supervised_bank(env_cfg, size, table=table, priors=priors,
                                        distractors=swap)
            info.update(labeled_samples=len(bank), unlabeled_samples=0)
        parts = RunParts(segmenter=segmenter, bank=bank, eval_data=eval_data, data_info=info,
                         phrases=phrases,
                         warm_cache=_warm_cache(run, table), env=env, recorder=recorder)
        D.wrap_segmenter(segmenter, run.ctx)
        if seg_cfg.use_text and seg_cfg.freeze_text and not stored:
            cached = phrase_features(segmenter, phrases, env_cfg.cache_dir, TEXT_BATCH,
                                     write=run.ctx.is_main)
            if cached is not None:
                info["text_features_from_cache"] = str(cached)
    return parts


def _load_splits(run: RunContext, env_cfg: EnvConfig, info: dict[str, int | str]):
    """Every split's table and priors: the train table and priors, the eval splits (loaded
    once: every evaluation of the run reads them) and the sorted phrases of all splits."""
    splits = ["train"] + list(run.resolved["eval_splits"])
    phrases: set[str] = set()
    eval_data: dict[str, EvalSplit] = {}
    train = None
    for split in tqdm(splits, desc="data + priors", disable=not run.progress, leave=False):
        table = load_table_of(env_cfg, split)
        if split != "train":  # train images are all read at setup; eval ones only at the end
            table.check_images()  # so a corrupt one is named now, not after the warm-up
        samples = RefSplit(table, "per_sentence")
        priors = load_priors(env_cfg.dataset, split, samples, env_cfg.prior_provider,
                             cache_dir=env_cfg.cache_dir, progress=run.progress,
                             **env_cfg.prior_options)
        phrases.update(text for ref in table.refs for _, text in ref.sentences)
        info[f"{split}_sentences"] = table.num_sentences()
        if split == "train":
            train = (table, priors)
        else:
            eval_data[split] = EvalSplit(split, samples, priors, env_cfg.proposal)
    return train[0], train[1], eval_data, sorted(phrases)


def _warm_cache(run: RunContext, table):
    """Where the warmed-up segmenter of this config and train ``table`` is shared
    (``warmup_cache``; single process only)."""
    cfg, resolved = run.cfg, run.resolved
    if not cfg.warmup_cache or run.ctx.enabled:
        return None
    key = warmup_key(resolved["env"], resolved["segmenter"], resolved["warmup_steps"],
                     cfg.warmup_batch, cfg.seed)
    return warmup_cache(cfg.warmup_cache, key, table)
