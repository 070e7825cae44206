"""``l2l-run``: one full semi-supervised run (priors -> warm-up -> self-evolving loop -> evaluation).

    l2l-run                                   # the built-in default: SynthRef, 5% labels, l2l
    l2l-run --config refcoco_5 --dry-run      # validate a config and print it resolved
    l2l-run --agent threshold --label-ratio 0.1 env.update_interval=16
    l2l-run --resume                          # continue an interrupted run from its checkpoint
    torchrun --nproc_per_node=2 -m experiments.run ...   # DDP segmenter training

Writes ``OUT/results.json`` (config, metrics per eval split, pseudo-label summary, timing),
``OUT/config.json``, the final ``OUT/segmenter.pt`` (and ``OUT/agent/``), TensorBoard logs under
``OUT/tb`` and a resumable ``OUT/checkpoint.pt``; prints the results table.
"""

from __future__ import annotations

import os

# Spinning OpenMP threads slow torch down many times over on a shared CPU; this only takes effect
# before torch is imported (by the imports below), so it comes first.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from experiments import config as C
from experiments import outputs as O
from experiments import plugins
from experiments import distributed as D
from experiments.checkpoint import checkpoint_path
from experiments.lock import OutputBusy, OutputLock
from experiments.report import summary_text
from experiments.runner import Runner
from segmenter import SegmenterConfig
from segmenter.shared.files import disk_full


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="l2l-run", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="KEY=VALUE overrides set any config field, with dotted keys for tables "
               "(env.update_interval=16, segmenter.widths=[8,16,16,16], agent_options.n_steps=32). "
               f"Valid keys: {', '.join(C.valid_keys())}.")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides")
    shipped = ", ".join(sorted(x.stem for x in C.CONFIG_DIR.glob("*.toml")))
    p.add_argument("--config", help=f"TOML config file, or the name of a shipped config ({shipped})")
    p.add_argument("--dataset", choices=["synthref", "refcoco", "refcoco+", "refcocog"])
    p.add_argument("--data-root", dest="data_root",
                   help="refer data root (RefCOCO) or SynthRef cache root")
    p.add_argument("--label-ratio", dest="label_ratio", type=float,
                   help="fraction of labeled train images")
    p.add_argument("--agent", help="agent name (l2l, threshold, sb3:ppo, ...)")
    p.add_argument("--prior", help="PROVIDER/ARG: simulated/<preset>, cache/<file>, or "
                   "mllm | grounding_dino | mm_grounding_dino | sam3/<model dir>")
    p.add_argument("--seed", type=int)
    p.add_argument("--out", help="output directory (default runs/<dataset>-<agent>-<pct>pct-s<seed>)")
    p.add_argument("--device", help="cpu, cuda, cuda:1 ...")
    p.add_argument("--cache-dir", dest="cache_dir", help="data and prior cache root")
    p.add_argument("--resume", action="store_true", help="continue the run in OUT from its checkpoint")
    p.add_argument("--overwrite", action="store_true",
                   help="discard a previous run in OUT and start again")
    p.add_argument("--dry-run", dest="dry_run", action="store_true",
                   help="validate the config and print it resolved, without touching data")
    p.add_argument("--no-progress", dest="no_progress", action="store_true", help="no progress bars")
    p.add_argument("--json", action="store_true", help="print results.json instead of the table")
    p.add_argument("--import", dest="imports", action="append", default=[], metavar="MODULE",
                   help="import MODULE first: agents and rewards it registers can be named "
                        "(repeatable; see experiments.plugins)")
    return p


FLAG_KEYS = ("dataset", "data_root", "label_ratio", "agent", "prior", "seed", "out", "device",
             "cache_dir")


def resolve(args: argparse.Namespace) -> tuple[C.RunConfig, dict[str, Any]]:
    """The run's config from defaults, file, flags and overrides; on ``--resume`` the saved
    config of the output directory is the starting point. Validated (paths too, unless dry-run)."""
    flags = {k: getattr(args, k) for k in FLAG_KEYS}
    if args.no_progress:
        flags["progress"] = False
    cfg = C.load_config(args.config, flags, args.overrides)
    if args.resume:
        saved_file = Path(cfg.out or C.default_out(cfg)) / "config.json"
        if saved_file.is_file():
            try:
                saved = json.loads(saved_file.read_text())
                if not isinstance(saved, dict):
                    raise ValueError(f"expected a JSON object, got {type(saved).__name__}")
            except (OSError, ValueError) as err:
                raise ValueError(f"{saved_file} is corrupt ({err}); it is the config of the run to "
                                 "resume: restore it, or start again with --overwrite") from None
            settings = {k: v for k, v in saved.items() if k != "resolved"}
            base = C.from_dict(settings, where=f" in {saved_file}")
            base.out = saved.get("out")
            cfg = C.load_config(args.config, flags, args.overrides, base=base)
    resolved = C.validate(cfg, check_paths=not args.dry_run)
    return cfg, resolved


def dry_run(cfg: C.RunConfig, resolved: dict[str, Any]) -> int:
    """Print the resolved config (and what this machine lacks to run it) without touching data."""

    full = C.resolved_dict(cfg, resolved)
    print(json.dumps(full, indent=2))
    provider, prior_opts = resolved["prior_provider"], resolved["prior_options"]
    seg_cfg = SegmenterConfig.from_dict(resolved["segmenter"])
    missing = C.missing_paths(cfg, provider, prior_opts, seg_cfg)
    status = "valid" if not missing else \
        "valid; on this machine it would not start yet: " + "; ".join(missing)
    print(f"config {status}", file=sys.stderr)
    return 0


def prepare_out(out: Path, resume: bool, overwrite: bool) -> None:
    """Refuse to mix runs: an existing run in ``out`` needs ``--resume`` or ``--overwrite``."""
    markers = [out / O.RESULTS, out / O.checkpoint_name(0)]
    if overwrite and out.exists():
        O.remove_outputs(out)  # everything a run writes (experiments.outputs), nothing else
        return
    if not resume and any(m.exists() for m in markers):
        raise FileExistsError(f"{out} already holds a run; pass --resume to continue it (or print "
                              f"its results), --overwrite to start again, or choose another --out")


def _full_disk(err: BaseException, out: Path) -> str:
    """The one line for a run stopped by a full disk: which path, and that it resumes."""
    where = err.filename if isinstance(err, OSError) and err.filename else out
    return (f"no space left on the disk of {where}; free space there and run again with "
            f"--resume: it continues from the last checkpoint in {out}")


def _message(err: BaseException) -> str:
    return str(err.args[0]) if isinstance(err, KeyError) and err.args else str(err)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``l2l-run``; returns the exit status (2 for configuration errors)."""
    args = build_parser().parse_intermixed_args(argv)
    try:
        plugins.load(args.imports)
        cfg, resolved = resolve(args)
    except (ValueError, FileNotFoundError, KeyError, TypeError) as err:
        print(f"l2l-run: error: {_message(err)}", file=sys.stderr)
        return 2
    if args.dry_run:
        return dry_run(cfg, resolved)


    torch.set_num_threads(cfg.threads)
    out = Path(resolved["out"])
    ctx, device = D.init(cfg.device)
    lock = OutputLock(out)
    try:
        if ctx.is_main:
            try:
                lock.acquire()  # one run per --out; also checks that it can be written
                prepare_out(out, args.resume, args.overwrite)
            except (FileExistsError, OutputBusy, OSError) as err:
                print(f"l2l-run: error: {err}", file=sys.stderr)
                return 2
            if args.resume and not checkpoint_path(out).exists() and not (out / O.RESULTS).exists():
                print(f"l2l-run: --resume: {out} holds no run yet; starting a fresh one", file=sys.stderr)
        D.barrier(ctx)
        config_dict = C.resolved_dict(cfg, resolved)
        try:
            try:
                runner = Runner(cfg, config_dict, resume=args.resume, ctx=ctx, device=device)
                runner.prepare()
            except (ValueError, FileNotFoundError, KeyError) as err:
                print(f"l2l-run: error: {_message(err)}", file=sys.stderr)
                return 2
            results = runner.run()
        except (OSError, RuntimeError) as err:  # checkpoints are written whole: it resumes
            if not disk_full(err):
                raise
            print(f"l2l-run: error: {_full_disk(err, out)}", file=sys.stderr)
            return 1
        if ctx.is_main:
            print(json.dumps(results, indent=2) if args.json else summary_text(results))
        return 0
    finally:
        lock.release()
        D.shutdown(ctx)


if __name__ == "__main__":
    sys.exit(main())
