"""Quality and speed of the guided segmenter, fully supervised on SynthRef.

Trains the full model (prior + text + guidance) for ``--minutes`` on every labelled SynthRef train
sentence, then a comparison at equal, shorter budgets (``--compare-minutes`` each): the full model
and its ablations (no prior, no text, no guidance). Each run is its own process (clean peak
memory). Reports val/testA/testB mIoU and oIoU for the student and the EMA teacher, mIoU split by
whether the simulated MLLM's prior box is right (IoU >= 0.5 with the true box) or wrong, and by
phrase kind; wall time, steps and peak RSS. Writes JSON (``--out``) and a markdown table next to it.

    python benchmarks/bench_segmenter.py [--minutes 10] [--compare-minutes 3]
        [--out benchmarks/results/segmenter_results.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

SPLITS = ("val", "testA", "testB")
OBJECTS = ["shape", "colour", "size"]
"""The SynthRef attributes whose per-pixel classes train the object-attribute heads (what a run's
labeled bank gives them, ``l2l_env.data.OBJECT_ATTRIBUTES``), unless a run says otherwise."""
RUNS: dict[str, dict[str, Any]] = {
    "full": {},
    "no_prior": {"config": {"use_prior": False}},
    "no_text": {"config": {"use_text": False}},
    "no_guidance": {"config": {"use_guidance": False}},
    "no_reason": {"config": {"reason_layers": 0}},
    "no_objects": {"objects": []},
    "no_mistakes": {"config": {"prior_swap": 0.0, "prior_warp": 0.0}},
    "no_swap": {"config": {"prior_swap": 0.0}},
    "reason_stride4": {"config": {"reason_stride": 4}},
    "swap_05": {"config": {"prior_swap": 0.05}},
    "swap_30": {"config": {"prior_swap": 0.3}},
    "words": {"config": {"word_buckets": 4096}},
    "previous_default": {"config": {"reason_layers": 0, "text_head": False, "prior_warp": 0.0,
                                    "prior_swap": 0.0}, "objects": []},
    "previous_no_prior": {"config": {"reason_layers": 0, "text_head": False, "use_prior": False},
                          "objects": []},
}
"""Every run the benchmark knows: ``config`` are :class:`SegmenterConfig` changes from the default
(ablations switch parts off: the prior, the text, the guidance module, the reasoning layers, the
simulated grounding mistakes of training: ``prior_swap``, the share of training samples whose
prior is replaced by the simulated grounder's ``mistakes`` preset, a jittered box on another
object of the image preferring ones that share the referent's attributes, and ``prior_warp``,
shifted, shrunk and grown training priors); ``objects`` the SynthRef attributes whose per-pixel
classes train the object-attribute heads (default :data:`OBJECTS`; the labeled images' scene
annotations). ``previous_default`` is the segmenter as it was before the reasoning layers,
object-attribute heads and training mistakes became the default."""


@dataclass
class SplitArrays:
    """One split at the segmenter's size, with the priors and their correctness."""

    images: np.ndarray
    masks: np.ndarray
    priors: np.ndarray | None  # None: evaluate with no prior at all
    phrases: list[str]
    prior_right: np.ndarray  # bool: prior box IoU >= 0.5 with the true box
    no_prior: np.ndarray  # bool: the grounder gave no box
    kinds: list[str]


def _box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise IoU of (N, 4) xywh boxes (NaN rows give 0)."""
    ax0, ay0, ax1, ay1 = a[:, 0], a[:, 1], a[:, 0] + a[:, 2], a[:, 1] + a[:, 3]
    bx0, by0, bx1, by1 = b[:, 0], b[:, 1], b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]
    iw = np.clip(np.minimum(ax1, bx1) - np.maximum(ax0, bx0), 0, None)
    ih = np.clip(np.minimum(ay1, by1) - np.maximum(ay0, by0), 0, None)
    inter = iw * ih
    union = a[:, 2] * a[:, 3] + b[:, 2] * b[:, 3] - inter
    out = np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)
    return np.nan_to_num(out, nan=0.0)


def _fallback_priors(samples: list, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Used only when ``l2l_env.priors`` cannot be imported: with probability 0.9 a soft box on
    the (jittered) referent box, else on another object's box."""
    rng = np.random.default_rng(seed)
    boxes = np.zeros((len(samples), 4))
    for i, s in enumerate(samples):
        others = [o.box for k, o in enumerate(s.objects) if k != s.referent]
        box = np.array(s.box, float) if rng.random() < 0.9 or not others else \
            np.array(others[rng.integers(len(others))], float)
        boxes[i] = box + rng.normal(0, 0.05, 4) * box[[2, 3, 2, 3]]
    h, w = samples[0].image.shape[:2]
    scale = np.array([size / w, size / h, size / w, size / h])
    b = boxes * scale
    coords = np.arange(size) + 0.5
    edge = 0.05 * np.maximum(b[:, 2:], 1.0)

    def profile(lo, hi, e):
        return 1 / (1 + np.exp(-(coords - lo[:, None]) / e[:, None])) * \
            1 / (1 + np.exp((coords - hi[:, None]) / e[:, None]))

    px = profile(b[:, 0], b[:, 0] + b[:, 2], edge[:, 0])
    py = profile(b[:, 1], b[:, 1] + b[:, 3], edge[:, 1])
    return (py[:, :, None] * px[:, None, :]).astype(np.float32), boxes


def mistake_priors(split: str, size: int, seed: int, num_train: int | None) -> np.ndarray:
    """Per sample, a *wrong* soft prior drawn like a strong MLLM's errors
    (:func:`l2l_env.priors.load_mistake_priors`): training priors for ``fit(prior_swap=...)``."""
    from l2l_env.data import load_split
    from l2l_env.priors import load_mistake_priors

    options = {} if num_train is None or split != "train" else {"num_train": num_train}
    split_seq = load_split("synthref", split, mode="per_sentence", **options)
    table = load_mistake_priors("synthref", split, split_seq, seed=seed + 1)
    return table.proposals([s.sample_id for s in split_seq], size, size, kind="box")


def object_targets(keys: list[str], num_train: int | None, size: int = 64
                   ) -> tuple[np.ndarray, list[int]]:
    """Per train sentence (in ``load_split`` order), the class of the object under each pixel for
    every attribute in ``keys`` (0 background), from SynthRef's scene annotations of the
    labeled images (:class:`l2l_env.objects.ObjectRows`, as a run's labeled bank has them):
    targets of the segmenter's object-attribute heads, and each attribute's class count."""
    from l2l_env.data import load_split
    from l2l_env.objects import ObjectRows, object_vocabulary

    options = {} if num_train is None else {"num_train": num_train}
    split = load_split("synthref", "train", mode="per_sentence", **options)
    vocabulary = object_vocabulary(split.table, keys)
    records = [split.record(i)[0] for i in range(len(split))]
    rows = ObjectRows(records, np.arange(len(records)), size, vocabulary)
    return rows[:], [len(v) for v in vocabulary.values()]


def load_arrays(split: str, size: int, preset: str, seed: int, num_train: int | None
                ) -> tuple[SplitArrays, str]:
    """A SynthRef split (every sentence) with simulated MLLM priors at ``size``."""
    from l2l_env.data import load_split
    from segmenter.data import stack_samples

    options = {} if num_train is None or split != "train" else {"num_train": num_train}
    split_seq = load_split("synthref", split, mode="per_sentence", **options)
    samples = list(split_seq)
    images, masks, phrases = stack_samples(samples, size)
    true_boxes = np.array([s.box for s in samples], float)
    try:
        from l2l_env.priors import load_priors

        table = load_priors("synthref", split, split_seq, "simulated", preset=preset, seed=seed)
        ids = [s.sample_id for s in samples]
        priors = table.proposals(ids, size, size, kind="box")
        boxes = table.boxes[table.rows(ids)]
        source = f"l2l_env.priors simulated provider, preset {preset}, soft box proposals"
    except ImportError as err:
        priors, boxes = _fallback_priors(samples, size, seed)
        source = f"benchmark-built soft boxes (l2l_env.priors unavailable: {err})"
    no_prior = ~np.isfinite(boxes).all(axis=1)
    right = (_box_iou(np.nan_to_num(boxes, nan=0.0), true_boxes) >= 0.5) & ~no_prior
    kinds = ["?"] * len(samples)
    try:
        from l2l_env.data import synthref

        data = synthref.load_arrays(split, **options)
        kind_of = dict(zip(data.sent_ids.tolist(), data.kinds))
        kinds = [kind_of.get(s.sent_id, "?") for s in samples]
    except Exception:  # phrase kinds are a nice-to-have breakdown
        pass
    return SplitArrays(images, masks, priors.astype(np.float32), phrases, right, no_prior,
                       kinds), source


def _miou(probs: np.ndarray, masks: np.ndarray) -> tuple[np.ndarray, dict[str, float]]:
    from l2l_env.metrics import iou, segmentation_metrics

    preds = probs > 0.5
    return iou(preds, masks), segmentation_metrics(preds, masks)


def evaluate(seg, data: dict[str, SplitArrays], teacher: bool) -> dict[str, Any]:
    """Metrics per split, plus mIoU by prior correctness and by phrase kind."""
    out: dict[str, Any] = {}
    for split, d in data.items():
        t0 = time.perf_counter()
        probs = seg.predict(d.images, d.priors, d.phrases, teacher=teacher)
        seconds = time.perf_counter() - t0
        ious, metrics = _miou(probs, d.masks)
        wrong = ~d.prior_right
        entry = {k: round(v, 4) for k, v in metrics.items()}
        entry["mIoU_prior_right"] = round(float(ious[d.prior_right].mean()), 4) \
            if d.prior_right.any() else None
        entry["mIoU_prior_wrong"] = round(float(ious[wrong].mean()), 4) if wrong.any() else None
        entry["n_prior_right"], entry["n_prior_wrong"] = int(d.prior_right.sum()), int(wrong.sum())
        kinds = np.array(d.kinds)
        entry["mIoU_by_kind"] = {k: round(float(ious[kinds == k].mean()), 4)
                                 for k in sorted(set(d.kinds))}
        entry["ms_per_sample"] = round(1000 * seconds / len(d.phrases), 3)
        out[split] = entry
    return out


def run_config(job: dict[str, Any]) -> dict[str, Any]:
    """One training run in this (child) process; returns its results."""
    import torch

    from segmenter import Segmenter, SegmenterConfig, fit

    torch.set_num_threads(job["threads"])
    t_start = time.perf_counter()
    cfg = SegmenterConfig(**job["config"])
    objects = None
    if job["objects"]:
        objects, classes = object_targets(job["objects"], job["num_train"], cfg.image_size)
        cfg = cfg.replace(object_classes=classes)
    data = {}
    source = ""
    for split in ("train",) + SPLITS:
        data[split], source = load_arrays(split, cfg.image_size, job["preset"], job["prior_seed"],
                                          job["num_train"])
    train = data.pop("train")
    t_data = time.perf_counter() - t_start

    probe = Segmenter(cfg)
    enc = probe.text_encoder
    t0 = time.perf_counter()
    if cfg.use_text:
        phrases = list(dict.fromkeys(train.phrases + [p for d in data.values() for p in d.phrases]))
        for i in range(0, len(phrases), 512):
            probe.text_features(phrases[i:i + 512])
    t_text = time.perf_counter() - t0
    # calibrate the step time, so the poly schedule ends when the time budget does
    rng = np.random.default_rng(0)
    idx = rng.choice(len(train.phrases), job["batch_size"], replace=False)
    batch = (train.images[idx], train.priors[idx], [train.phrases[i] for i in idx],
             train.masks[idx].astype(np.float32), None,
             None if objects is None else objects[idx])
    for _ in range(3):
        probe.train_step(*batch)
    t0 = time.perf_counter()
    for _ in range(8):
        probe.train_step(*batch)
    step_s = (time.perf_counter() - t0) / 8
    del probe
    budget_s = 60.0 * job["minutes"]
    total_steps = max(100, int(0.97 * budget_s / step_s))
    seg = Segmenter(cfg.replace(total_steps=total_steps), text_encoder=enc)
    swap = float(cfg.prior_swap) if cfg.use_prior else 0.0
    alt = (mistake_priors("train", cfg.image_size, job["prior_seed"], job["num_train"])
           if swap > 0 else None)
    result = fit(seg, train.images, train.priors, train.phrases, train.masks.astype(np.float32),
                 steps=total_steps, minutes=job["minutes"], batch_size=job["batch_size"],
                 seed=cfg.seed, progress=job["progress"], log_every=100, desc=job["name"],
                 alt_priors=alt, prior_swap=swap, objects=objects)
    metrics = {"student": evaluate(seg, data, teacher=False),
               "teacher": evaluate(seg, data, teacher=True)}
    if cfg.use_prior:  # the same model with no prior at all (the flat no-answer map)
        blind = {k: replace(d, priors=None) for k, d in data.items()}
        metrics["teacher_no_prior"] = evaluate(seg, blind, teacher=True)
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "name": job["name"], "minutes_budget": job["minutes"], "prior_swap": swap,
        "config": seg.config.to_dict(), "parameters": seg.num_parameters(),
        "train_samples": len(train.phrases),
        "train_prior_accuracy": round(float(train.prior_right.mean()), 4),
        "steps": result.steps, "stopped_by": result.stopped_by,
        "train_seconds": round(result.seconds, 1),
        "calibrated_step_seconds": round(step_s, 4),
        "mean_step_seconds": round(result.seconds / max(result.steps, 1), 4),
        "data_seconds": round(t_data, 1), "text_cache_seconds": round(t_text, 1),
        "wall_seconds": round(time.perf_counter() - t_start, 1),
        "peak_rss_mb": round(peak_kb / 1024, 1),
        "prior_source": source,
        "eval_prior_accuracy": {s: round(float(d.prior_right.mean()), 4) for s, d in data.items()},
        "metrics": metrics,
        "history": result.history,
    }


def _spawn(job: dict[str, Any], workdir: Path) -> dict[str, Any]:
    """Run one job in a fresh interpreter (its own peak memory; OpenMP set before torch loads)."""
    job_path = workdir / f"job_{job['name']}.json"
    out_path = job_path.with_suffix(".out.json")
    job_path.write_text(json.dumps(job))
    try:
        subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child", str(job_path),
                        str(out_path)], check=True)
        return json.loads(out_path.read_text())
    finally:
        job_path.unlink(missing_ok=True)
        out_path.unlink(missing_ok=True)


def machine() -> dict[str, Any]:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "torch": torch.__version__, "platform": platform.platform(),
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def _fmt(v: Any, digits: int = 3) -> str:
    return "-" if v is None else (f"{v:.{digits}f}" if isinstance(v, float) else str(v))


def markdown(results: dict[str, Any]) -> str:
    """The results as markdown tables."""
    which = results["headline_model"]
    lines = ["# Segmenter benchmark: fully supervised SynthRef", "",
             f"Command: `{results['command']}`  ", f"Machine: {results['machine']['cpu']}, "
             f"{results['machine']['cores']} cores, torch {results['machine']['torch']}, "
             f"{results['threads']} threads (shared with other jobs: timings are noisy)  ",
             f"Priors: {results['prior_source']}  ",
             f"Metrics of the {which} (the other model is in the JSON). Prior right = the prior "
             f"box has IoU >= 0.5 with the true box; wrong includes no-answer priors.", ""]
    head = ("| run | budget (min) | steps | train s | peak RSS MB | params | "
            + " | ".join(f"{s} mIoU | {s} oIoU" for s in SPLITS)
            + " | val mIoU prior right | val mIoU prior wrong | val mIoU no prior |")
    sep = "|" + "---|" * (head.count("|") - 1)

    def row(r: dict[str, Any]) -> str:
        m = r["metrics"][which]
        cells = [r["name"], f"{float(r['minutes_budget']):g}", str(r["steps"]),
                 _fmt(float(r["train_seconds"]), 0), _fmt(float(r["peak_rss_mb"]), 0),
                 str(r["parameters"])]
        for s in SPLITS:
            cells += [_fmt(m[s]["mIoU"]), _fmt(m[s]["oIoU"])]
        cells += [_fmt(m["val"]["mIoU_prior_right"]), _fmt(m["val"]["mIoU_prior_wrong"])]
        blind = r["metrics"].get(f"{which}_no_prior")
        cells.append(_fmt(blind["val"]["mIoU"]) if blind else
                     ("(trained without)" if not r["config"].get("use_prior", True) else "-"))
        return "| " + " | ".join(cells) + " |"

    kinds = sorted({k for r in [results.get("main")] + results.get("comparison", []) if r
                    for k in r["metrics"][which]["val"]["mIoU_by_kind"]})

    def kind_row(r: dict[str, Any], label: str = "") -> list[str]:
        out = []
        own = "with its prior" if r["config"].get("use_prior", True) else "trained without prior"
        for key, tag in ((which, own), (f"{which}_no_prior", "no prior")):
            if key in r["metrics"]:
                by = r["metrics"][key]["val"]["mIoU_by_kind"]
                out.append(f"| {r['name']}{label} | {r['minutes_budget']:g} | {tag} | "
                           + " | ".join(_fmt(by.get(k)) for k in kinds) + " |")
        return out

    if results.get("main"):
        lines += ["## Full model", "", head, sep, row(results["main"]), ""]
        m = results["main"]["metrics"]
        lines += ["Student vs EMA teacher (val mIoU): "
                  f"{_fmt(m['student']['val']['mIoU'])} / {_fmt(m['teacher']['val']['mIoU'])}; "
                  "val mIoU by phrase kind: "
                  + ", ".join(f"{k} {_fmt(v)}" for k, v in m[which]['val']['mIoU_by_kind'].items()),
                  ""]
    if results.get("comparison"):
        lines += [f"## Ablations at equal budgets ({results['compare_minutes']} min each)", "",
                  head, sep] + [row(r) for r in results["comparison"]] + [""]
    runs = ([results["main"]] if results.get("main") else []) + results.get("comparison", [])
    if runs:
        lines += ["## val mIoU by phrase kind", "",
                  "| run | budget (min) | evaluated | " + " | ".join(kinds) + " |",
                  "|" + "---|" * (3 + len(kinds))]
        for r in runs:
            lines += kind_row(r)
        lines.append("")
    return "\n".join(lines)


def child(job_path: str, out_path: str) -> int:
    """The ``--child JOB OUT`` entry point: run one job, write its results."""
    result = run_config(json.loads(Path(job_path).read_text()))
    Path(out_path).write_text(json.dumps(result))
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        return child(argv[1], argv[2])
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="training budget, full model")
    parser.add_argument("--compare-minutes", type=float, default=3.0,
                        help="training budget of each run in the ablation comparison (0: skip)")
    parser.add_argument("--compare", default="full,no_prior,no_text,no_guidance",
                        help=f"comma-separated runs of the comparison, from {list(RUNS)}")
    parser.add_argument("--main", default="full", help=f"the main run, one of {list(RUNS)}")
    parser.add_argument("--out", default="benchmarks/results/segmenter_results.json")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--preset", default="qwen2.5-vl-7b", help="simulated MLLM preset")
    parser.add_argument("--prior-seed", type=int, default=0)
    parser.add_argument("--num-train", type=int, default=None, help="SynthRef train sentences")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="SegmenterConfig overrides (JSON values), e.g. lr=0.003")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    # On a shared machine OpenMP threads that spin while waiting stall badly (2-5x slower steps):
    # let them sleep instead. Set before any child process imports torch.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

    overrides: dict[str, Any] = {}
    for item in args.set:
        key, _, value = item.partition("=")
        try:
            overrides[key] = json.loads(value)
        except json.JSONDecodeError:
            overrides[key] = value
    from segmenter import SegmenterConfig

    base = SegmenterConfig(**overrides).to_dict()
    names = [n for n in args.compare.split(",") if n]
    unknown = [n for n in names + [args.main] if n not in RUNS]
    if unknown:
        parser.error(f"unknown run(s) {unknown}; expected some of {list(RUNS)}")

    def job(name: str, minutes: float) -> dict[str, Any]:
        return {"name": name, "minutes": minutes,
                "config": {**base, **RUNS[name].get("config", {})},
                "objects": RUNS[name].get("objects", OBJECTS),
                "threads": args.threads, "batch_size": args.batch_size, "preset": args.preset,
                "prior_seed": args.prior_seed, "num_train": args.num_train,
                "progress": not args.no_progress}

    results: dict[str, Any] = {
        "command": "python benchmarks/bench_segmenter.py " + " ".join(argv),
        "machine": machine(), "threads": args.threads, "batch_size": args.batch_size,
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "headline_model": "teacher", "compare_minutes": args.compare_minutes,
    }
    out = Path(args.out)
    workdir = Path(tempfile.mkdtemp(prefix="bench_segmenter_"))
    t0 = time.perf_counter()
    if args.minutes > 0:
        print(f"[bench] full model, {args.minutes} min", flush=True)
        results["main"] = _spawn(job(args.main, args.minutes), workdir)
        results["prior_source"] = results["main"]["prior_source"]
    results["comparison"] = []
    if args.compare_minutes > 0:
        for name in names:
            print(f"[bench] comparison run {name}, {args.compare_minutes} min", flush=True)
            results["comparison"].append(_spawn(job(name, args.compare_minutes), workdir))
            results["prior_source"] = results["comparison"][-1]["prior_source"]
    results["total_wall_seconds"] = round(time.perf_counter() - t0, 1)
    shutil.rmtree(workdir, ignore_errors=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    md = markdown(results)
    out.with_suffix(".md").write_text(md + "\n")
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
