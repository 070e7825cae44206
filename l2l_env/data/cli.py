"""``l2l-data``: inspect data sets.

    l2l-data info --dataset synthref [--data-root DIR] [--label-ratio R] [--json]
    l2l-data show --dataset synthref --split val --num 16 --out DIR
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from l2l_env.cli_utils import parse_key_values
from l2l_env.data import DATASETS, SPLITS, label_split, load_table
from l2l_env.data.types import RefSplit
from l2l_env.data.visualize import grid, sample_panel


def dataset_info(dataset: str, data_root: str | None, label_ratio: float, seed: int,
                 options: dict) -> dict[str, dict[str, int]]:
    """Per-split counts: images, refs, expressions; for train also labeled/unlabeled."""
    info: dict[str, dict[str, int]] = {}
    for split in SPLITS[dataset]:
        table = load_table(dataset, split, data_root=data_root, **options)
        row = {"images": len(table.image_ids), "refs": len(table.refs),
               "expressions": table.num_sentences()}
        if split == "train":
            ls = label_split(dataset, table.image_ids, label_ratio, seed=seed)
            labeled = set(ls.labeled)
            row["labeled_images"] = len(ls.labeled)
            row["unlabeled_images"] = len(ls.unlabeled)
            row["labeled_refs"] = sum(r.image_id in labeled for r in table.refs)
            row["unlabeled_refs"] = len(table.refs) - row["labeled_refs"]
        info[split] = row
    return info


def format_table(info: dict[str, dict[str, int]]) -> str:
    columns = ["images", "refs", "expressions", "labeled_images", "unlabeled_images",
               "labeled_refs", "unlabeled_refs"]
    header = ["split"] + columns
    rows = [[split] + [str(row.get(c, "-")) for c in columns] for split, row in info.items()]
    widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]
    fmt = lambda r: "  ".join(v.rjust(w) for v, w in zip(r, widths))  # noqa: E731
    return "\n".join([fmt(header), fmt(["-" * w for w in widths])] + [fmt(r) for r in rows])


def show(dataset: str, split: str, data_root: str | None, num: int, out: Path, seed: int,
         options: dict) -> Path:
    """Write one PNG per sample (image | mask overlay, phrase) and a grid of them."""

    samples = RefSplit(load_table(dataset, split, data_root=data_root, **options), "per_sentence")
    out.mkdir(parents=True, exist_ok=True)
    panels = []
    for i in range(min(num, len(samples))):
        s = samples[i]
        scale = max(1, 256 // max(s.image.shape[:2]))
        panel = sample_panel(s.image, s.mask, s.phrase, scale=scale)
        panel.save(out / f"{dataset}_{split}_{i:03d}.png")
        panels.append(panel)
    path = out / f"{dataset}_{split}_grid.png"
    grid(panels, columns=2).save(path)
    return path


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="l2l-data", description="Inspect L2L data sets.")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("info", "show"):
        p = sub.add_parser(name)
        p.add_argument("--dataset", default="synthref", choices=sorted(DATASETS))
        p.add_argument("--data-root", default=None,
                       help="data root (RefCOCO: folder of refcoco/, images/; SynthRef: cache root)")
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--option", "-o", action="append", default=[], metavar="KEY=VALUE",
                       help="loader option, e.g. -o num_train=2000 or -o image_dir=/coco/train2014")
    sub.choices["info"].add_argument("--label-ratio", type=float, default=0.05)
    sub.choices["info"].add_argument("--json", action="store_true")
    sub.choices["show"].add_argument("--split", default="val")
    sub.choices["show"].add_argument("--num", type=int, default=8)
    sub.choices["show"].add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    try:
        options = parse_key_values(args.option, "--option")
        if args.command == "info":
            start = time.perf_counter()
            info = dataset_info(args.dataset, args.data_root, args.label_ratio, args.seed, options)
            if args.json:
                print(json.dumps(info, indent=2))
            else:
                print(f"{args.dataset} (label ratio {args.label_ratio:g}, seed {args.seed}; "
                      f"{time.perf_counter() - start:.1f} s)")
                print(format_table(info))
        else:
            if args.split not in SPLITS[args.dataset]:
                parser.error(f"--split must be one of {SPLITS[args.dataset]}")
            if args.num < 1:
                raise ValueError(f"--num {args.num}: expected the number of samples to draw, >= 1")
            if args.out.exists() and not args.out.is_dir():
                raise ValueError(f"--out {args.out} is a file; expected a folder for the pictures")
            path = show(args.dataset, args.split, args.data_root, args.num, args.out, args.seed, options)
            print(f"wrote {path}")
    except (FileNotFoundError, ValueError) as err:
        print(f"l2l-data: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
