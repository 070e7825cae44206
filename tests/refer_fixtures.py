"""A tiny RefCOCO-style data set written in the exact refer format, for tests.

``write_refer_fixture(root)`` writes ``root/<dataset>/instances.json``,
``root/<dataset>/refs(<split_by>).p`` (pickle protocol 2, as the originals) and small images under
``root/images/mscoco/images/train2014/``. The returned :class:`ReferFixture` carries the expected
masks, computed without pycocotools (numpy slices and a hand-written RLE encoder), so a loader can
be checked against them. Annotation kinds covered:

* 101: one-part polygon (rectangle)             * 102: two overlapping polygon parts
* 103: uncompressed RLE (counts a list)         * 104: compressed RLE (counts a str)
* 106: polygon on an RGBA PNG image             * 103's image is a grayscale JPEG
* 105, 108: distractors (annotated, never referred to)
"""

from __future__ import annotations

import json
import pickle
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

IMAGE_SUBDIR = Path("images") / "mscoco" / "images" / "train2014"
CATEGORIES = [{"id": 1, "name": "person", "supercategory": "person"},
              {"id": 3, "name": "car", "supercategory": "vehicle"},
              {"id": 18, "name": "dog", "supercategory": "animal"}]

# image_id: (width, height, PIL mode, extension)
IMAGES: dict[int, tuple[int, int, str, str]] = {
    9: (48, 40, "RGB", "jpg"), 25: (40, 32, "L", "jpg"), 30: (36, 30, "RGB", "jpg"),
    42: (32, 24, "RGBA", "png"), 50: (30, 30, "RGB", "jpg"), 60: (24, 20, "RGB", "jpg"),
    61: (24, 20, "RGB", "jpg"), 62: (24, 20, "RGB", "jpg"),
}
# The two overlapping parts of annotation 102, as (x0, y0, x1, y1) rectangles on image 9.
PART_A = (20, 5, 34, 20)
PART_B = (28, 12, 44, 30)
OVERLAP_PIXEL = (15, 30)  # (row, col) covered by both parts

# ref_id: (ann_id, image_id, unc split, sentences)
REFS: dict[int, tuple[int, int, str, tuple[str, ...]]] = {
    1: (101, 9, "train", ("man on left", "guy in red", "left person")),
    2: (102, 9, "train", ("dog in the middle", "brown dog")),
    3: (103, 25, "train", ("round thing",)),
    4: (104, 30, "val", ("the car", "silver car on the road")),
    5: (106, 42, "testA", ("woman", "lady with hat")),
    6: (107, 50, "testB", ("blue car",)),
    7: (109, 60, "train", ("person right", "tall man")),
    8: (110, 61, "train", ("kid",)),
    9: (111, 62, "train", ("dog", "small dog", "puppy")),
}


def file_name(image_id: int) -> str:
    return f"COCO_train2014_{image_id:012d}.{IMAGES[image_id][3]}"


def rect_polygon(x0: float, y0: float, x1: float, y1: float) -> list[float]:
    return [float(x0), float(y0), float(x1), float(y0), float(x1), float(y1), float(x0), float(y1)]


def rect_mask(height: int, width: int, *rects: tuple[int, int, int, int]) -> np.ndarray:
    """Union of integer rectangles ``(x0, y0, x1, y1)``: what pycocotools rasterises for them."""
    m = np.zeros((height, width), dtype=bool)
    for x0, y0, x1, y1 in rects:
        m[y0:y1, x0:x1] = True
    return m


def rle_encode_uncompressed(mask: np.ndarray) -> dict:
    """COCO uncompressed RLE of an HxW bool mask (column-major runs, zeros first), without
    pycocotools."""
    flat = np.asarray(mask, dtype=np.uint8).flatten(order="F")
    change = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat[0] == 1:
        counts = [0] + counts
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": [int(c) for c in counts]}


def rle_encode_compressed(mask: np.ndarray) -> dict:
    """COCO compressed RLE (``counts`` a str, as stored in JSON)."""
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


def mask_bbox(mask: np.ndarray) -> list[float]:
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    return [float(cols[0]), float(rows[0]), float(cols[-1] - cols[0] + 1),
            float(rows[-1] - rows[0] + 1)]


def disc_mask(height: int, width: int, cx: float, cy: float, r: float) -> np.ndarray:
    yy, xx = np.mgrid[:height, :width]
    return (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r


def band_mask(height: int, width: int) -> np.ndarray:
    yy, xx = np.mgrid[:height, :width]
    return (np.abs(xx - yy - 3) <= 4) & (yy > 2)


def default_split(unc_split: str, split_by: str) -> str:
    """The fixture's split of a ref under ``split_by`` (umd/google have one ``test``)."""
    if split_by == "unc" or unc_split in ("train", "val"):
        return unc_split
    return "test"


@dataclass
class ReferFixture:
    """What was written, and what a correct loader must give back."""

    root: Path
    dataset: str
    split_by: str
    image_dir: Path
    refs: list[dict]
    instances: dict
    masks: dict[int, np.ndarray] = field(default_factory=dict)  # ann_id -> HxW bool
    kinds: dict[int, str] = field(default_factory=dict)  # ann_id -> segmentation kind

    @property
    def refs_path(self) -> Path:
        return self.root / self.dataset / f"refs({self.split_by}).p"

    @property
    def instances_path(self) -> Path:
        return self.root / self.dataset / "instances.json"

    def ref_ids(self, split: str) -> list[int]:
        return [r["ref_id"] for r in self.refs if r["split"] == split]

    def image_path(self, image_id: int) -> Path:
        return self.image_dir / file_name(image_id)


def _annotations() -> tuple[list[dict], dict[int, np.ndarray], dict[int, str]]:
    anns: list[dict] = []
    masks: dict[int, np.ndarray] = {}
    kinds: dict[int, str] = {}

    def add(ann_id: int, image_id: int, cat: int, seg: Any, mask: np.ndarray, kind: str,
            iscrowd: int = 0) -> None:
        anns.append({"id": ann_id, "image_id": image_id, "category_id": cat,
                     "segmentation": seg, "bbox": mask_bbox(mask), "area": float(mask.sum()),
                     "iscrowd": iscrowd})
        masks[ann_id], kinds[ann_id] = mask, kind

    def size(image_id: int) -> tuple[int, int]:
        w, h, _, _ = IMAGES[image_id]
        return h, w

    def rect(ann_id: int, image_id: int, cat: int, r: tuple[int, int, int, int]) -> None:
        add(ann_id, image_id, cat, [rect_polygon(*r)], rect_mask(*size(image_id), r), "polygon")

    rect(101, 9, 1, (2, 3, 14, 12))
    add(102, 9, 18, [rect_polygon(*PART_A), rect_polygon(*PART_B)],
        rect_mask(*size(9), PART_A, PART_B), "multipolygon")
    rect(105, 9, 18, (1, 30, 10, 38))
    disc = disc_mask(*size(25), 20, 16, 8)
    add(103, 25, 3, rle_encode_uncompressed(disc), disc, "rle", iscrowd=1)
    rect(108, 25, 1, (0, 0, 6, 5))
    band = band_mask(*size(30))
    add(104, 30, 3, rle_encode_compressed(band), band, "compressed_rle")
    rect(106, 42, 1, (4, 2, 20, 22))
    rect(107, 50, 3, (5, 5, 25, 20))
    rect(109, 60, 1, (1, 1, 10, 18))
    rect(110, 61, 1, (12, 4, 22, 16))
    rect(111, 62, 18, (3, 8, 15, 19))
    return anns, masks, kinds


def write_images(image_dir: Path) -> None:
    """Write the fixture's images (seeded noise; one grayscale JPEG, one RGBA PNG)."""
    image_dir.mkdir(parents=True, exist_ok=True)
    for image_id, (w, h, mode, ext) in IMAGES.items():
        pixels = np.random.default_rng(image_id).integers(0, 256, (h, w, 4), dtype=np.uint8)
        if mode == "L":
            img = Image.fromarray(pixels[..., 0], mode="L")
        else:
            img = Image.fromarray(pixels[..., : len(mode)], mode=mode)
        img.save(image_dir / file_name(image_id), format="JPEG" if ext == "jpg" else "PNG")


def write_refs(path: Path, refs: Any, protocol: int = 2) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        pickle.dump(refs, fh, protocol=protocol)


def write_instances(path: Path, instances: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(instances))


def write_refer_fixture(root: str | Path, dataset: str = "refcoco", split_by: str = "unc",
                        image_dir: str | Path | None = None,
                        splits: dict[int, str] | None = None) -> ReferFixture:
    """Write the fixture data set under ``root`` (images under ``image_dir`` if given).

    ``splits`` overrides the split of some refs (``{ref_id: split}``).
    """
    root = Path(root)
    image_dir = Path(image_dir) if image_dir is not None else root / IMAGE_SUBDIR
    anns, masks, kinds = _annotations()
    cat_of = {a["id"]: a["category_id"] for a in anns}
    images = [{"id": i, "file_name": file_name(i), "width": w, "height": h, "license": 1,
               "coco_url": "", "date_captured": "2013-11-14 16:28:13"}
              for i, (w, h, _, _) in IMAGES.items()]
    instances = {"images": images, "annotations": anns, "categories": CATEGORIES}
    refs = []
    sent_id = 0
    for ref_id, (ann_id, image_id, unc_split, texts) in REFS.items():
        sentences = []
        for text in texts:
            sentences.append({"tokens": text.split(), "raw": text.capitalize(), "sent_id": sent_id,
                              "sent": text})
            sent_id += 1
        split = (splits or {}).get(ref_id, default_split(unc_split, split_by))
        refs.append({"sent_ids": [s["sent_id"] for s in sentences],
                     "file_name": f"COCO_train2014_{image_id:012d}_{ann_id}.jpg",
                     "ann_id": ann_id, "ref_id": ref_id, "image_id": image_id, "split": split,
                     "sentences": sentences, "category_id": cat_of[ann_id]})
    write_images(image_dir)
    fixture = ReferFixture(root, dataset, split_by, image_dir, refs, instances, masks, kinds)
    write_instances(fixture.instances_path, instances)
    write_refs(fixture.refs_path, refs)
    return fixture


def py2_pickle(obj: Any) -> bytes:
    """``obj`` pickled (protocol 2) as Python 2's cPickle writes it: ``str`` values become Python 2
    byte strings (UTF-8), the way the original refs files were written."""
    out = bytearray(b"\x80\x02")

    def emit(o: Any) -> None:
        if isinstance(o, bool):
            out.extend(b"\x88" if o else b"\x89")
        elif isinstance(o, int):
            out.extend(b"J" + struct.pack("<i", o))
        elif isinstance(o, float):
            out.extend(b"G" + struct.pack(">d", o))
        elif isinstance(o, str):
            data = o.encode("utf-8")
            out.extend((b"U" + bytes([len(data)]) if len(data) < 256
                        else b"T" + struct.pack("<i", len(data))) + data)
        elif isinstance(o, list):
            out.extend(b"](")
            for v in o:
                emit(v)
            out.extend(b"e")
        elif isinstance(o, dict):
            out.extend(b"}(")
            for k, v in o.items():
                emit(k)
                emit(v)
            out.extend(b"u")
        else:
            raise TypeError(f"py2_pickle cannot write {type(o).__name__}")

    emit(obj)
    out.extend(b".")
    return bytes(out)
