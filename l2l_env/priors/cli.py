"""``l2l-priors``: compute, merge and report on priors.

    l2l-priors [compute] --dataset refcoco --provider PROVIDER --model PATH [--out FILE]
               [--shard i/n]
    l2l-priors report --dataset synthref [--provider simulated] [--preset NAME] [--json]
    l2l-priors merge FILE [--remove-shards]

PROVIDER is ``mllm`` (Qwen2-VL, Qwen2.5-VL, Qwen3-VL, Florence-2), ``grounding_dino``,
``mm_grounding_dino`` or ``sam3`` (a local checkpoint folder each), ``simulated`` or ``cache``.

``compute`` (the default command) grounds every sentence of the chosen splits (default: all) and
appends them to ``--out`` (one file for all splits), or, without ``--out``, to the cache file
that :func:`l2l_env.priors.load_priors` reads for that split and provider. It resumes: run it again
after an interruption and only missing samples are computed. ``--shard i/n``, or a ``torchrun``
launch (``RANK``/``WORLD_SIZE``), computes every n-th sample into ``FILE.shard-i-of-n``; readers
merge the shards, ``merge`` folds them into ``FILE``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from l2l_env.cli_utils import parse_key_values
from l2l_env.data import DATASETS, SPLITS, load_table
from l2l_env.data.types import RefSplit
from l2l_env.priors.cache import (CacheError, compute_priors, merge_shards, parse_shard,
                                  shard_from_env, source_of)
from l2l_env.priors.registry import MODEL_PROVIDERS, PROVIDERS, make_provider
from l2l_env.priors.report import format_report, json_report, prior_quality
from l2l_env.priors.simulated import DEFAULT_PRESET, PRESETS
from l2l_env.priors.table import load_priors, priors_path

COMMANDS = ("compute", "report", "merge")


def provider_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """The provider's kwargs from the command line (only what was given)."""
    if args.provider == "simulated":
        kwargs: dict[str, Any] = {"preset": args.preset or DEFAULT_PRESET, "seed": args.seed}
    elif args.provider in MODEL_PROVIDERS:
        if not args.model:
            raise ValueError(f"--provider {args.provider} needs --model PATH (a local "
                             "transformers model folder)")
        kwargs = {"model": args.model, "device": args.device, "batch_size": args.batch_size}
        if args.provider == "mllm":
            kwargs.update(family=args.family, max_new_tokens=args.max_new_tokens)
        if kwargs["device"] == "cuda" and "LOCAL_RANK" in os.environ:
            kwargs["device"] = f"cuda:{int(os.environ['LOCAL_RANK'])}"
    else:
        if not args.path:
            raise ValueError("--provider cache needs --path FILE")
        kwargs = {"path": args.path}
    if args.preset and args.provider != "simulated":
        raise ValueError(f"--preset only applies to --provider simulated, not {args.provider!r}")
    for flag, value in (("--family", args.family), ("--max-new-tokens", args.max_new_tokens)):
        if value is not None and args.provider != "mllm":
            raise ValueError(f"{flag} only applies to --provider mllm, not {args.provider!r}")
    kwargs.update(parse_key_values(args.provider_option, "--provider-option"))
    return {k: v for k, v in kwargs.items() if v is not None}


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", default="synthref", choices=sorted(DATASETS))
    p.add_argument("--split", action="append", default=None,
                   help="a split (repeatable; default: every split of the data set)")
    p.add_argument("--data-root", default=None, help="data root (SynthRef: cache root)")
    p.add_argument("--option", "-o", action="append", default=[], metavar="KEY=VALUE",
                   help="data loader option, e.g. -o num_eval=500 or -o image_dir=/coco/train2014")
    p.add_argument("--provider", default="simulated", choices=sorted(PROVIDERS))
    p.add_argument("--preset", default=None, choices=sorted(PRESETS),
                   help=f"simulated MLLM preset (default {DEFAULT_PRESET})")
    p.add_argument("--seed", type=int, default=0, help="simulated provider seed")
    p.add_argument("--model", default=None,
                   help=f"{' | '.join(MODEL_PROVIDERS)}: local model folder")
    p.add_argument("--family", default=None,
                   help="mllm: qwen2-vl | qwen2.5-vl | qwen3-vl | florence-2 (default: detected)")
    p.add_argument("--device", default=None, help="model providers: cpu | cuda | cuda:N")
    p.add_argument("--batch-size", type=int, default=None,
                   help="model providers: samples per forward pass")
    p.add_argument("--max-new-tokens", type=int, default=None, help="mllm: answer length limit")
    p.add_argument("--path", default=None, help="cache provider: the prior file to read")
    p.add_argument("--provider-option", "-p", action="append", default=[], metavar="KEY=VALUE",
                   help="any other provider kwarg")
    p.add_argument("--cache-dir", default=None,
                   help="cache root for load_priors files (default $L2L_CACHE_DIR or ~/.cache/l2l)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="l2l-priors", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    compute = sub.add_parser("compute", help="ground every sentence and cache it (default)")
    _add_common(compute)
    compute.add_argument("--out", type=Path, default=None,
                         help="output JSONL (default: load_priors' cache file per split)")
    compute.add_argument("--shard", default=None, help="i/n: compute every n-th sample from i")
    compute.add_argument("--chunk-size", type=int, default=64, help="samples per flushed chunk")
    compute.add_argument("--limit", type=int, default=None,
                         help="only the first N sentences per split")
    report = sub.add_parser("report", help="Acc@0.5 and proposal mIoU per split")
    _add_common(report)
    report.add_argument("--kind", default="box", help="proposal kind (box, gaussian, ...)")
    report.add_argument("--json", action="store_true", help="print a JSON object")
    merge = sub.add_parser("merge", help="fold FILE.shard-*-of-* into FILE")
    merge.add_argument("file", type=Path)
    merge.add_argument("--remove-shards", action="store_true")
    return parser


def _splits(args: argparse.Namespace) -> list[str]:
    splits = args.split or list(SPLITS[args.dataset])
    unknown = [s for s in splits if s not in SPLITS[args.dataset]]
    if unknown:
        raise ValueError(f"unknown split(s) {unknown} for {args.dataset}; "
                         f"expected {SPLITS[args.dataset]}")
    return splits


def _tables(args: argparse.Namespace) -> dict[str, Any]:
    options = parse_key_values(args.option, "--option")
    return {s: load_table(args.dataset, s, data_root=args.data_root, **options)
            for s in _splits(args)}


def run_compute(args: argparse.Namespace) -> int:
    shard = parse_shard(args.shard) if args.shard else (shard_from_env() or (0, 1))
    kwargs = provider_kwargs(args)
    tables = _tables(args)
    sources = {}
    for split, table in tables.items():
        samples = RefSplit(table, "per_sentence")
        if args.limit is not None:
            samples = samples[: args.limit]
        sources[split] = source_of(samples)
    if args.out is not None:
        owner: dict[str, str] = {}
        for split, source in sources.items():
            for sid in source.ids:
                if owner.setdefault(sid, split) != split:
                    raise ValueError(f"sample id {sid!r} is in both {owner[sid]} and {split}; "
                                     f"write one --out per split (--split)")
    provider = make_provider(args.provider, **kwargs)
    start = time.perf_counter()
    for split, source in sources.items():
        out = args.out or priors_path(args.dataset, split, args.provider, args.cache_dir, **kwargs)
        result = compute_priors(provider, source, out, split=split, shard=shard,
                                header={"dataset": args.dataset}, progress=True)
        print(f"{args.dataset} {split}: {result.computed} computed, {result.reused} already done "
              f"-> {result.path}")
    print(f"done in {time.perf_counter() - start:.1f} s"
          + (f" (shard {shard[0]}/{shard[1]}; readers merge shards, or: l2l-priors merge FILE)"
             if shard[1] > 1 else ""))
    return 0


def run_report(args: argparse.Namespace) -> int:
    kwargs = provider_kwargs(args)
    rows = {}
    for split, table in _tables(args).items():
        samples = RefSplit(table, "per_sentence")
        priors = load_priors(args.dataset, split, samples, args.provider, cache_dir=args.cache_dir,
                             **kwargs)
        rows[split] = prior_quality(priors, samples, kind=args.kind)
    if args.json:
        print(json.dumps(json_report(rows), indent=2))
    else:
        what = args.provider + (f" {kwargs['preset']}" if args.provider == "simulated" else "")
        print(format_report(rows, f"{args.dataset} priors ({what}; {args.kind} proposal, percent)"))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or (argv[0] not in COMMANDS and argv[0] not in ("-h", "--help")):
        argv = ["compute", *argv]  # `l2l-priors --provider ... --out FILE` computes
    args = build_parser().parse_args(argv)
    try:
        if args.command == "compute":
            return run_compute(args)
        if args.command == "report":
            return run_report(args)
        path = merge_shards(args.file, remove=args.remove_shards)
        print(f"merged shards into {path}")
        return 0
    except (FileNotFoundError, ValueError, KeyError, CacheError) as err:
        print(f"l2l-priors: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
