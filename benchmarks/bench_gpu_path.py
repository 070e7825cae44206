"""The GPU path measured: the ``refcoco_5pct`` run at its real sizes on the refer-layout
synthetic set, with loop steps per second, the segmenter update's time and peak GPU memory.

    python benchmarks/bench_gpu_path.py --device cuda [--images 300] [--image-size 480]
        [--backbones real] [--loop-steps 256] [--work runs/gpu_path] [--out OUT.json]

The data set is :func:`bench_scale.write_dataset`'s (the exact refer layout, 640x480 JPEGs,
polygon and RLE masks). ``--backbones real`` builds the config's backbones at their real sizes
from transformers configs with random weights, saved with ``save_pretrained``: Swin-B
(``swin-base-patch4-window12-384``: embed 128, depths 2-2-18-2, heads 4-8-16-32, window 12)
and BERT-base (``BertConfig()`` defaults, 110M parameters, fine-tuned as the config says), with
a word-piece tokenizer over the data set's words. ``--backbones tiny`` builds the same classes at
toy sizes: the CPU dry run, which takes the same code path (the run is built by
:class:`experiments.runner.Runner` from ``refcoco_5pct`` as ``l2l-run`` builds it; only sizes,
the number of images and the device differ; AMP is on in the config and active on CUDA only).

Measured, each after one unmeasured call: a warm-up step (``warmup_batch`` labeled samples),
the loop (the config's ``l2l`` agent, its replay window filled to full size first) in env steps
per second, and one segmenter update (:func:`bench_profile.segmenter_update_run`); on CUDA the
peak allocated and reserved GPU memory of each phase and of the whole process.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import string
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
for path in (str(ROOT), str(BENCH)):
    if path not in sys.path:
        sys.path.insert(0, path)

import torch  # noqa: E402

from bench_profile import full_replay, segmenter_update_run  # noqa: E402
from bench_scale import write_dataset  # noqa: E402

SWIN_B = dict(image_size=384, patch_size=4, embed_dim=128, depths=[2, 2, 18, 2],
              num_heads=[4, 8, 16, 32], window_size=12)
SWIN_TINY = dict(image_size=64, patch_size=4, embed_dim=16, depths=[1, 1, 1, 1],
                 num_heads=[1, 1, 1, 1], window_size=2)
BERT_TINY = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                 intermediate_size=64)


def write_backbones(folder: Path, size: str, sentences: list[str]) -> tuple[Path, Path]:
    """Swin and BERT folders (random weights) at ``size`` ``real`` or ``tiny``; BERT with a
    word-piece tokenizer whose vocabulary holds the data set's words."""
    from transformers import BertConfig, BertModel, BertTokenizerFast, SwinConfig, SwinModel

    swin, bert = folder / f"swin-{size}", folder / f"bert-{size}"
    if not (swin / "config.json").is_file():
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            SwinModel(SwinConfig(**(SWIN_B if size == "real" else SWIN_TINY))).save_pretrained(swin)
    if not (bert / "config.json").is_file():
        words = sorted({w for s in sentences for w in s.lower().split()})
        chars = list(string.ascii_lowercase + string.digits)
        vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + chars + \
            [f"##{c}" for c in chars] + [w for w in words if w not in chars]
        BertTokenizerFast(vocab={w: i for i, w in enumerate(vocab)}).save_pretrained(bert)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            config = BertConfig() if size == "real" else BertConfig(**BERT_TINY)
            BertModel(config).save_pretrained(bert)
    return swin, bert


def sentences_of(data_root: Path) -> list[str]:
    import pickle

    with open(data_root / "refcoco" / "refs(unc).p", "rb") as fh:
        refs = pickle.load(fh)
    return [s["sent"] for r in refs for s in r["sentences"]]


class Phase:
    """Wall time and peak GPU memory of repeated calls of a function (synchronised on CUDA)."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()

    def __call__(self, run: Callable[[], Any], units: int, repeats: int, warm: bool = True
                 ) -> dict[str, Any]:
        """Seconds per unit (median over ``repeats``), after one unmeasured call when
        ``warm`` (allocations, autotuning, first batches)."""
        if warm:
            run()
        self.sync()
        if self.cuda:
            torch.cuda.reset_peak_memory_stats()
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            run()
            self.sync()
            times.append((time.perf_counter() - t0) / units)
        out: dict[str, Any] = {"s_per_unit": statistics.median(times), "repeats": times}
        if self.cuda:
            out["peak_allocated_mb"] = torch.cuda.max_memory_allocated() / 2**20
            out["peak_reserved_mb"] = torch.cuda.max_memory_reserved() / 2**20
        return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--images", type=int, default=300, help="images of the synthetic set")
    p.add_argument("--image-size", type=int, default=480)
    p.add_argument("--backbones", choices=("real", "tiny"), default="real")
    p.add_argument("--warmup-steps", type=int, default=3, help="measured warm-up steps")
    p.add_argument("--loop-steps", type=int, default=256,
                   help="measured loop steps (rounded up to whole rollouts of the agent)")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--threads", type=int, default=4)
    p.add_argument("--work", default="runs/gpu_path")
    p.add_argument("--out", default=None, help="JSON report (default: WORK/gpu_path.json)")
    args = p.parse_args(argv)
    t_start = time.perf_counter()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda but CUDA is not available (use --device cpu for a dry run)")
    work = Path(args.work)
    data_root = write_dataset(work / f"refer-{args.images}", work / "pool", args.images)
    swin, bert = write_backbones(work / "models", args.backbones, sentences_of(data_root))

    from experiments import config as C
    from experiments.runner import Runner
    from segmenter import fit

    flags = {"data_root": str(data_root), "out": str(work / "run"), "device": args.device,
             "cache_dir": str(work / "cache"), "prior": "simulated/qwen2.5-vl-7b",
             "progress": False}
    overrides = [f'split_dir="{work / "splits"}"', f'segmenter.backbone="hf:{swin}"',
                 f'segmenter.text_encoder="{bert}"', f"segmenter.image_size={args.image_size}",
                 "warmup_steps=0", f"threads={args.threads}", "eval_every=0", "log_images=0"]
    cfg = C.load_config("refcoco_5pct", flags, overrides)
    resolved = C.validate(cfg, check_paths=True)
    torch.set_num_threads(cfg.threads)
    runner = Runner(cfg, C.resolved_dict(cfg, resolved))
    runner.prepare()
    env, seg = runner.env, runner.segmenter
    u = env.unwrapped
    setup_s = time.perf_counter() - t_start
    phase = Phase(seg.device)
    bank = u.labeled
    batch = max(1, min(cfg.warmup_batch, len(bank)))

    def warm() -> None:
        fit(seg, bank.images, bank.priors, bank.phrases, bank.masks, steps=args.warmup_steps,
            batch_size=batch, alt_priors=bank.distractors, objects=bank.objects,
            progress=False, log_every=0)

    report: dict[str, Any] = {"warmup_step": phase(warm, args.warmup_steps, args.repeats)}
    report["warmup_step"]["batch"] = batch
    agent = runner.make_agent()
    env.reset(seed=cfg.seed)
    n_steps = int(agent.config.n_steps)
    agent.learn(env, n_steps)  # builds the policy and the replay window
    agent.rollout.replay_obs, agent.rollout.replay_scores = full_replay(agent)
    steps = n_steps * -(-args.loop_steps // n_steps)
    loop = phase(lambda: agent.learn(env, steps), steps, 1, warm=False)
    loop["steps_per_s"] = 1.0 / loop["s_per_unit"]
    report["loop"] = loop
    update, pending = segmenter_update_run(env)
    report["segmenter_update"] = phase(update, 1, args.repeats)
    report["segmenter_update"].update(pending_labels=pending,
                                      optimiser_steps=int(u.config.update_steps),
                                      labeled_batch=int(u.config.labeled_batch))
    scfg = seg.config
    report.update({
        "command": "python benchmarks/bench_gpu_path.py " + " ".join(argv or sys.argv[1:]),
        "device": (torch.cuda.get_device_name(seg.device) if seg.device.type == "cuda"
                   else f"cpu ({platform.machine()}, {os.cpu_count()} CPUs)"),
        "torch": torch.__version__, "threads": cfg.threads,
        "amp": bool(scfg.amp), "amp_dtype": scfg.amp_dtype,
        "amp_active": bool(scfg.amp) and seg.device.type == "cuda",
        "image_size": scfg.image_size, "backbones": args.backbones,
        "segmenter_parameters": seg.num_parameters(),
        "text_parameters": sum(p.numel() for p in seg.text_encoder.parameters()),
        "freeze_text": bool(scfg.freeze_text), "grid_size": int(u.config.grid_size),
        "images": args.images, "labeled_samples": len(u.labeled),
        "unlabeled_samples": len(u.unlabeled), "probe_samples": len(u.probe),
        "setup_s": setup_s,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "total_s": time.perf_counter() - t_start,
    })
    if seg.device.type == "cuda":
        report["peak_gpu_allocated_mb"] = max(report[k]["peak_allocated_mb"]
                                              for k in ("warmup_step", "loop",
                                                        "segmenter_update"))
    out = Path(args.out) if args.out else work / "gpu_path.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(json.dumps({k: report[k] for k in ("device", "amp_active", "image_size", "backbones")}
                     | {"warmup_step_s": report["warmup_step"]["s_per_unit"],
                        "loop_steps_per_s": loop["steps_per_s"],
                        "segmenter_update_s": report["segmenter_update"]["s_per_unit"],
                        "peak_gpu_allocated_mb": report.get("peak_gpu_allocated_mb")}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
