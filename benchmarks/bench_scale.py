"""Scale benchmark of the data path: peak memory, start-up time and loop speed against the number
of images, on a synthetic data set in the exact refer layout.

    .venv/bin/python benchmarks/bench_scale.py [--sizes 500 2000 8000] [--steps 256]
        [--root runs/scale_data] [--out benchmarks/results/scale]

For each N it writes (once) ``ROOT/refcoco-N``: ``refcoco/instances.json`` (polygon and
compressed-RLE annotations), ``refcoco/refs(unc).p`` (three referred objects per image, three
sentences each; images split 85/5/5/5 into train/val/testA/testB) and N JPEG images of 640x480
under ``images/mscoco/images/train2014`` (hard links into one shared pool). Then, per N, two
fresh child processes each build the run of the ``refcoco_5pct`` config exactly as ``l2l-run``
does (``Runner.prepare``: tables, priors, label split, env, segmenter), reset the env and take
``--steps`` loop steps with the ``threshold`` agent:

* the *cold* child starts with an empty cache folder (it computes the priors, packs the image
  cache and encodes every phrase into the text store), the *warm* ones reuse them;
* ``startup_s``: warm, from the child's start (imports included) to the end of its first env
  step; ``cold_startup_s`` the same for the cold child;
* ``peak_rss_mb``: ``ru_maxrss`` of the warm child (``os.wait4`` of that child alone);
  ``cold_peak_rss_mb`` of the cold one;
* ``steps_per_s``: env steps after the first one per second (warm child).

Settings that keep it affordable on a 2-core CPU (they change no data-path cost): a tiny random
Swin through ``hf:`` (saved with ``save_pretrained``), the MiniLM text encoder frozen with an LRU of
2048 phrases, simulated priors, segmenter input 128 px (images stay 640x480 on disk and are
decoded and resized from them), device cpu, 2 threads, no warm-up, and a held-out probe of 12
referred objects (``env.probe_size=12``: the config's 64 is capped at a quarter of the labeled
objects, which at N = 500 would make the probe, scored at every update, grow with N).

The warm child runs ``--repeats`` times (default 2): ``peak_rss_mb`` and ``startup_s`` are the
largest of its runs, ``steps_per_s`` the fastest (the machine is shared; the slower runs are
kept in the JSON).
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

T_START = time.perf_counter()
ROOT = Path(__file__).resolve().parents[1]
WIDTH, HEIGHT = 640, 480
COLOURS = {"red": (200, 40, 40), "green": (40, 160, 60), "blue": (40, 70, 200),
           "yellow": (220, 200, 40), "purple": (130, 50, 160), "orange": (230, 130, 30)}
SHAPES = ("box", "ball")
SPLITS = (("train", 0.85), ("val", 0.05), ("testA", 0.05), ("testB", 0.05))


# --------------------------------------------------------------------------- the data set

def _objects(image_id: int) -> list[dict[str, Any]]:
    import numpy as np

    rng = np.random.default_rng([image_id, 7])
    out = []
    for k in range(3):
        w, h = (int(v) for v in rng.integers(60, 260, 2))
        x, y = int(rng.integers(0, WIDTH - w)), int(rng.integers(0, HEIGHT - h))
        out.append({"box": (x, y, w, h), "shape": SHAPES[int(rng.integers(2))],
                    "colour": list(COLOURS)[int(rng.integers(len(COLOURS)))]})
    return out


def _polygon(obj: dict[str, Any]) -> list[float]:
    import numpy as np

    x, y, w, h = obj["box"]
    if obj["shape"] == "box":
        return [x, y, x + w, y, x + w, y + h, x, y + h]
    t = np.linspace(0, 2 * np.pi, 20, endpoint=False)
    pts = np.stack([x + w / 2 + (w / 2) * np.cos(t), y + h / 2 + (h / 2) * np.sin(t)], 1)
    return [round(float(v), 2) for v in pts.ravel()]


def _write_image(path: Path, image_id: int) -> None:
    import numpy as np
    from PIL import Image, ImageDraw

    rng = np.random.default_rng([image_id, 3])
    top, bottom = rng.integers(0, 255, 3), rng.integers(0, 255, 3)
    ramp = np.linspace(0.0, 1.0, HEIGHT)[:, None, None]
    base = (top * (1 - ramp) + bottom * ramp).astype(np.uint8)
    img = Image.fromarray(np.broadcast_to(base, (HEIGHT, WIDTH, 3)).copy())
    draw = ImageDraw.Draw(img)
    for obj in _objects(image_id):
        x, y, w, h = obj["box"]
        (draw.rectangle if obj["shape"] == "box" else draw.ellipse)(
            [x, y, x + w, y + h], fill=COLOURS[obj["colour"]])
    img.save(path, quality=90)


def write_dataset(root: Path, pool: Path, n_images: int) -> Path:
    """The refer layout of ``n_images`` images under ``root`` (skipped when already complete)."""
    import numpy as np
    from pycocotools import mask as mask_utils

    done = root / "refcoco" / "COMPLETE"
    if done.is_file():
        return root
    image_dir = root / "images" / "mscoco" / "images" / "train2014"
    image_dir.mkdir(parents=True, exist_ok=True)
    pool.mkdir(parents=True, exist_ok=True)
    images, anns, refs = [], [], []
    sent_id = 0
    for image_id in range(1, n_images + 1):
        name = f"COCO_train2014_{image_id:012d}.jpg"
        if not (pool / name).is_file():
            _write_image(pool / name, image_id)
        if not (image_dir / name).exists():
            os.link(pool / name, image_dir / name)
        images.append({"id": image_id, "file_name": name, "width": WIDTH, "height": HEIGHT})
        u = np.random.default_rng([image_id, 5]).random()
        split = next(s for s, edge in zip((s for s, _ in SPLITS),
                                          np.cumsum([p for _, p in SPLITS])) if u < edge)
        for k, obj in enumerate(_objects(image_id)):
            ann_id = image_id * 10 + k
            poly = _polygon(obj)
            if k == 2:  # every third annotation as compressed RLE, like COCO's crowd masks
                rle = mask_utils.merge(mask_utils.frPyObjects([poly], HEIGHT, WIDTH))
                seg: Any = {"size": [HEIGHT, WIDTH], "counts": rle["counts"].decode("ascii")}
            else:
                seg = [poly]
            anns.append({"id": ann_id, "image_id": image_id, "bbox": list(obj["box"]),
                         "category_id": 1 + SHAPES.index(obj["shape"]), "segmentation": seg,
                         "area": float(obj["box"][2] * obj["box"][3]), "iscrowd": 0})
            side = "left" if obj["box"][0] + obj["box"][2] / 2 < WIDTH / 2 else "right"
            texts = (f"the {obj['colour']} {obj['shape']} on the {side}",
                     f"{obj['colour']} {obj['shape']} number {k} in picture {image_id}",
                     f"{side} {obj['shape']} {image_id % 97}")
            sentences = []
            for text in texts:
                sentences.append({"tokens": text.split(), "raw": text, "sent": text,
                                  "sent_id": sent_id})
                sent_id += 1
            refs.append({"ref_id": ann_id, "ann_id": ann_id, "image_id": image_id,
                         "split": split, "sentences": sentences,
                         "sent_ids": [s["sent_id"] for s in sentences],
                         "category_id": 1 + SHAPES.index(obj["shape"]), "file_name": name})
    (root / "refcoco").mkdir(parents=True, exist_ok=True)
    categories = [{"id": 1 + i, "name": s, "supercategory": "thing"} for i, s in enumerate(SHAPES)]
    (root / "refcoco" / "instances.json").write_text(json.dumps(
        {"images": images, "annotations": anns, "categories": categories}))
    with open(root / "refcoco" / "refs(unc).p", "wb") as fh:
        pickle.dump(refs, fh, protocol=2)
    done.write_text(f"{n_images}\n")
    return root


def write_backbone(folder: Path) -> Path:
    if not (folder / "config.json").is_file():
        from transformers import SwinConfig, SwinModel

        SwinModel(SwinConfig(image_size=128, patch_size=4, embed_dim=16, depths=[1, 1, 1, 1],
                             num_heads=[1, 1, 1, 1], window_size=4)).save_pretrained(folder)
    return folder


# --------------------------------------------------------------------------- one measurement

def child(data_root: Path, cache: Path, backbone: Path, out: Path, steps: int) -> dict[str, Any]:
    """Build the run of ``refcoco_5pct`` as ``l2l-run`` does, then take ``steps`` env steps."""
    import numpy as np
    import torch

    import agents
    from experiments import config as C
    from experiments.runner import Runner

    flags = {"data_root": str(data_root), "out": str(out), "device": "cpu", "cache_dir": str(cache),
             "prior": "simulated/qwen2.5-vl-7b", "agent": "threshold", "progress": False}
    overrides = [f'split_dir="{cache}/splits"', f'segmenter.backbone="hf:{backbone}"',
                 'segmenter.text_encoder="minilm"', "segmenter.freeze_text=true",
                 "segmenter.text_cache_size=2048", "segmenter.image_size=128",
                 "warmup_steps=0", "threads=2", "eval_every=0", "log_images=0",
                 "env.probe_size=12"]
    cfg = C.load_config("refcoco_5pct", flags, overrides)
    resolved = C.validate(cfg, check_paths=True)
    torch.set_num_threads(cfg.threads)
    runner = Runner(cfg, C.resolved_dict(cfg, resolved))
    runner.prepare()
    env = runner.parts.env
    agent = agents.make(cfg.agent, **resolved["agent_kwargs"])
    obs, _ = env.reset(seed=cfg.seed)
    obs, *_ = env.step(agent.act(obs, deterministic=True))
    t_first = time.perf_counter()
    startup = t_first - T_START
    for _ in range(steps - 1):
        obs, _, term, trunc, _ = env.step(agent.act(obs, deterministic=True))
        if term or trunc:
            obs, _ = env.reset()
    loop_s = time.perf_counter() - t_first
    info = runner.parts.data_info
    u = env.unwrapped
    return {"startup_s": round(startup, 2), "steps": steps, "loop_s": round(loop_s, 2),
            "steps_per_s": round((steps - 1) / loop_s, 3),
            "n_sentences": int(info.get("train_sentences", 0)),
            "train_images": len(u.label_split.labeled) + len(u.label_split.unlabeled),
            "labeled_images": len(u.label_split.labeled),
            "loop_pool_samples": len(u.unlabeled), "timing": runner.run_ctx.timing,
            "text_features": info.get("text_features", "encoded up front"),
            "image_store": type(u.unlabeled.images.store).__name__,
            "probe_mIoU_seen": float(np.float32(u.trainer.probe_miou or 0.0))}


def data_costs(data_root: Path, priors_cache: Path, work: Path, size: int = 480,
               batches: int = 50) -> dict[str, Any]:
    """Per-sample costs of the data path at the real input size (``size``), on the train images
    of ``data_root``: packing the image cache (decode + resize + write, once per image), then per
    sample of a batch: an image read from the cache, a prior proposal rendered, its grid pooled,
    a mask decoded (polygon / RLE) and resized. Milliseconds per image or sample."""
    import numpy as np
    import torch

    from l2l_env.bank import build_bank, train_image_store
    from l2l_env.data import RefSplit, load_table
    from l2l_env.priors import load_priors

    torch.set_num_threads(2)
    table = load_table("refcoco", "train", data_root=data_root)
    priors = load_priors("refcoco", "train", RefSplit(table), "simulated", cache_dir=priors_cache,
                         preset="qwen2.5-vl-7b")
    shutil.rmtree(work, ignore_errors=True)
    t0 = time.perf_counter()
    store = train_image_store(table, size, work)
    pack = time.perf_counter() - t0
    bank = build_bank(table, priors, size, 32, images=store)
    rng = np.random.default_rng(0)
    timings = {"image": 0.0, "prior": 0.0, "grid": 0.0, "mask": 0.0}
    counts = {"image": 0, "prior": 0, "grid": 0, "mask": 0}
    for k in range(batches + 1):  # the first pass warms up (untimed)
        rows = rng.choice(len(bank), 32, replace=False)
        for name, source, take in (("image", bank.images, rows), ("prior", bank.priors, rows),
                                   ("grid", bank.prior_grid, rows), ("mask", bank.masks, rows[:8])):
            t = time.perf_counter()
            source[take]
            if k:
                timings[name] += time.perf_counter() - t
                counts[name] += len(take)
    out = {f"{k}_ms_per_sample": round(1000 * timings[k] / counts[k], 3) for k in timings}
    out.update({"size": size, "train_images": len(store),
                "pack_ms_per_image": round(1000 * pack / len(store), 2),
                "cache_bytes_per_image": size * size * 3, "threads": 2})
    return out


def run_child(args: argparse.Namespace, data_root: Path, cache: Path, tag: str) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--child", str(data_root), "--cache", str(cache),
           "--backbone", str(args.backbone), "--steps", str(args.steps),
           "--run-out", str(args.root / f"run-{tag}")]
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "PYTHONPATH": str(ROOT)}
    with open(args.root / f"{tag}.log", "w") as log:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, env=env, text=True,
                                cwd=ROOT)
        stdout = proc.stdout.read()
        _, status, usage = os.wait4(proc.pid, 0)
    if status != 0:
        raise RuntimeError(f"child {tag} failed (status {status}); see {args.root / f'{tag}.log'}")
    result = json.loads(stdout.strip().splitlines()[-1])
    result["peak_rss_mb"] = round(usage.ru_maxrss / 1024.0, 1)  # KiB on Linux
    return result


REFCOCO = {"train_images": 16994, "train_sentences": 120624, "eval_sentences": 21586,
           "sentences_per_ref": 120624 / 42404}
"""RefCOCO (UNC): train 16,994 images, 42,404 referred objects, 120,624 expressions; val + testA +
testB 10,834 + 5,657 + 5,095 expressions."""


def estimate(report: dict[str, Any]) -> dict[str, Any]:
    """Estimates for full RefCOCO runs of ``refcoco_{1,5,10}pct`` from the measured costs: peak
    RSS and warm start-up extrapolated linearly in the train sentences (least squares over the
    measured sizes), the cold start-up adding the image cache packing at 480 px, and the CPU work
    of the data path per run from the per-sample costs at 480 px and the config's schedule."""
    import numpy as np

    sizes, costs = report["sizes"], report["data_costs"]  # "grid" includes its prior's rendering
    x = np.array([e["n_sentences"] for e in sizes], float)
    rss_fit = np.polyfit(x, [e["peak_rss_mb"] for e in sizes], 1)
    start_fit = np.polyfit(x, [e["startup_s"] for e in sizes], 1)
    n = REFCOCO["train_sentences"]
    rss = float(np.polyval(rss_fit, n))
    warm = float(np.polyval(start_fit, n))
    cold = warm + costs["pack_ms_per_image"] * REFCOCO["train_images"] / 1000.0
    # refcoco.toml: warm-up 10000 steps of 16; loop 160000 steps, an update every 32 (4 steps of
    # the 32 pending + 8 labeled rows, then the probe of 64 objects is scored); every step reads
    # its window's inputs, renders its prior grid and (diagnostics) decodes its mask and prior.
    probe = 64 * REFCOCO["sentences_per_ref"]
    c = {k: costs[f"{k}_ms_per_sample"] for k in ("image", "prior", "grid", "mask")}
    per_update = (32 * (c["image"] + c["prior"]) + 4 * 8 * (c["image"] + c["prior"] + c["mask"])
                  + probe * (c["image"] + c["prior"] + c["mask"]))
    per_step = (c["image"] + c["prior"]) + c["grid"] + (c["mask"] + c["prior"]) + per_update / 32
    warmup = 10000 * 16 * (c["image"] + c["prior"] + c["mask"])
    loop = 160000 * per_step
    rows = []
    for pct in (1, 5, 10):
        rows.append({"config": f"refcoco_{pct}pct", "label_ratio": pct / 100,
                     "labeled_images": round(REFCOCO["train_images"] * pct / 100),
                     "peak_rss_mb": round(rss), "startup_warm_s": round(warm, 1),
                     "startup_cold_s": round(cold, 1),
                     "data_ms_per_loop_step": round(per_step, 2),
                     "data_cpu_h_warmup": round(warmup / 3.6e6, 2),
                     "data_cpu_h_loop": round(loop / 3.6e6, 2),
                     "image_cache_gb": round(REFCOCO["train_images"]
                                             * costs["cache_bytes_per_image"] / 1e9, 1)})
    return {"fits": {"peak_rss_mb": [round(float(v), 6) for v in rss_fit],
                     "startup_s": [round(float(v), 8) for v in start_fit],
                     "x": "train sentences"}, "refcoco": REFCOCO, "runs": rows}


def estimate_table(est: dict[str, Any]) -> str:
    """The estimates as a markdown table (also pasted into the README)."""
    out = ["| config | labeled images | host peak RSS (MB) | start-up warm / cold (s) | "
           "data path per loop step (ms, 1 core) | data CPU h: warm-up + loop | image cache (GB) |",
           "|---|---:|---:|---:|---:|---:|---:|"]
    for r in est["runs"]:
        out.append(f"| {r['config']} | {r['labeled_images']} | {r['peak_rss_mb']} | "
                   f"{r['startup_warm_s']} / {r['startup_cold_s']} | {r['data_ms_per_loop_step']} | "
                   f"{r['data_cpu_h_warmup']} + {r['data_cpu_h_loop']} | {r['image_cache_gb']} |")
    return "\n".join(out)


def write_markdown(report: dict[str, Any], path: Path) -> None:
    """``benchmarks/results/scale.md``: the table of ``report`` (as written to the JSON)."""
    lines = ["# Scale of the data path: memory, start-up and loop speed against the data set's size",
             "", f"Command: `{report['command']}`", "", f"Machine: {report['machine']}.", "",
             f"Settings: {report['settings']}.", "",
             "Each size runs in fresh child processes: a *cold* one with an empty cache folder "
             "(it computes the priors of every split, packs the image cache and encodes every "
             "phrase into the text store), then "
             "warm ones that reuse both. `startup_s` is the warm start-up (process start, imports "
             "included, to the end of the first env step: config, tables, priors, label split, "
             "banks, segmenter, env); `cold_startup_s` the same for the cold run. `peak_rss_mb` is "
             "the `ru_maxrss` of a warm child (`os.wait4` of that child alone; the largest of the "
             "warm runs); `steps_per_s` the env steps after the first per second (the fastest "
             "warm run: the 2-core machine is shared).", "",
             "| images | train sentences | peak RSS (MB) | start-up warm (s) | start-up cold (s) "
             "| steps/s | cold peak RSS (MB) | cold steps/s |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for e in report.get("sizes", []):
        lines.append(f"| {e['n_images']} | {e['n_sentences']} | {e['peak_rss_mb']:.0f} | "
                     f"{e['startup_s']:.1f} | {e['cold_startup_s']:.1f} | {e['steps_per_s']:.2f} | "
                     f"{e['cold_peak_rss_mb']:.0f} | {e['cold_steps_per_s']:.2f} |")
    ratios = report.get("ratios")
    if ratios:
        sizes = report["sizes"]
        lines += ["", f"Largest over smallest ({sizes[-1]['n_images']} vs {sizes[0]['n_images']} "
                  f"images): peak RSS {ratios['rss_largest_over_smallest']:.2f}x (target <= 1.3x), "
                  f"steps/s {ratios['steps_per_s_largest_over_smallest']:.2f}x (target >= 0.8x); "
                  f"warm start-up at the largest size {sizes[-1]['startup_s']:.1f} s (target "
                  f"< 120 s)."]
    costs = report.get("data_costs")
    if costs:
        lines += ["", f"## Per-sample data costs at {costs['size']} px", "",
                  f"Command: `{costs['command']}` ({costs['train_images']} train images, "
                  f"{costs['threads']} torch threads; milliseconds)", "",
                  "| pack the image cache (per image, once) | image read | prior rendered | "
                  "prior grid | mask decoded + resized |", "|---:|---:|---:|---:|---:|",
                  f"| {costs['pack_ms_per_image']} | {costs['image_ms_per_sample']} | "
                  f"{costs['prior_ms_per_sample']} | {costs['grid_ms_per_sample']} | "
                  f"{costs['mask_ms_per_sample']} |", "",
                  f"The packed cache holds {costs['cache_bytes_per_image']} bytes per image at "
                  f"this size."]
    est = report.get("estimates")
    if est:
        lines += ["", "## Estimates for full RefCOCO runs (derived, not measured)", "",
                  estimate_table(est)]
    path.write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[500, 2000, 8000])
    p.add_argument("--steps", type=int, default=256)
    p.add_argument("--repeats", type=int, default=2, help="warm runs per size")
    p.add_argument("--root", type=Path, default=ROOT / "runs" / "scale_data")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "scale")
    p.add_argument("--costs", action="store_true",
                   help="only measure the per-sample data costs at 480 px on the smallest data "
                        "set (after a full run: its prior cache) and add them to OUT.json")
    p.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--cache", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--backbone", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--run-out", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child is not None:
        result = child(args.child, args.cache, args.backbone, args.run_out, args.steps)
        print(json.dumps(result))
        return 0
    args.root = args.root.resolve()
    args.root.mkdir(parents=True, exist_ok=True)
    if args.costs:
        n = min(args.sizes)
        costs = data_costs(args.root / f"refcoco-{n}", args.root / f"cache-{n}",
                           args.root / "costs-cache")
        path = Path(f"{args.out}.json")
        report = json.loads(path.read_text()) if path.is_file() else {}
        report.pop("estimates", None)
        report["data_costs"] = {"command": "OMP_WAIT_POLICY=PASSIVE .venv/bin/python "
                                           f"benchmarks/bench_scale.py --costs --sizes {n}",
                                "data_set_images": n, **costs}
        if report.get("sizes"):
            report["estimates"] = estimate(report)
        path.write_text(json.dumps(report, indent=2) + "\n")
        write_markdown(report, Path(f"{args.out}.md"))
        print(json.dumps(costs))
        return 0
    args.backbone = write_backbone(args.root / "swin")
    entries = []
    for n in sorted(args.sizes):
        t0 = time.perf_counter()
        data_root = write_dataset(args.root / f"refcoco-{n}", args.root / "pool", n)
        written = time.perf_counter() - t0
        cache = args.root / f"cache-{n}"
        shutil.rmtree(cache, ignore_errors=True)
        cold = run_child(args, data_root, cache, f"cold-{n}")
        warm = [run_child(args, data_root, cache, f"warm-{n}-{k}") for k in range(args.repeats)]
        entry = {"n_images": n, "n_sentences": warm[0]["n_sentences"],
                 "peak_rss_mb": max(w["peak_rss_mb"] for w in warm),
                 "startup_s": max(w["startup_s"] for w in warm),
                 "cold_startup_s": cold["startup_s"], "cold_peak_rss_mb": cold["peak_rss_mb"],
                 "steps_per_s": max(w["steps_per_s"] for w in warm),
                 "cold_steps_per_s": cold["steps_per_s"],
                 "steps": args.steps, "dataset_write_s": round(written, 1),
                 "warm_runs": warm, "cold": cold}
        entries.append(entry)
        print(json.dumps({k: v for k, v in entry.items() if k not in ("warm_runs", "cold")}),
              flush=True)
    report = {
        "command": "OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/bench_scale.py "
                   + " ".join(["--sizes"] + [str(n) for n in args.sizes]
                            + ["--steps", str(args.steps), "--repeats", str(args.repeats)]),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores (shared with other jobs), "
                   f"Python {platform.python_version()}",
        "settings": "refcoco_5pct config; tiny random Swin (hf:), MiniLM frozen, text_cache_size "
                    "2048, simulated priors, segmenter image_size 128, grid 32, env.probe_size 12, "
                    "threshold agent, cpu, 2 threads, no warm-up; images 640x480 JPEG",
        "sizes": entries,
    }
    by_n = {e["n_images"]: e for e in entries}
    if len(by_n) >= 2:
        lo, hi = by_n[min(by_n)], by_n[max(by_n)]
        report["ratios"] = {
            "rss_largest_over_smallest": round(hi["peak_rss_mb"] / lo["peak_rss_mb"], 3),
            "steps_per_s_largest_over_smallest": round(hi["steps_per_s"] / lo["steps_per_s"], 3)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    Path(f"{args.out}.json").write_text(json.dumps(report, indent=2) + "\n")
    write_markdown(report, Path(f"{args.out}.md"))
    print(json.dumps(report.get("ratios", {})))
    return 0


if __name__ == "__main__":
    sys.exit(main())
