"""RefCOCO / RefCOCO+ / RefCOCOg in the ``refer`` format, with masks from pycocotools.

Layout under ``data_root``, as the refer API has it::

    <root>/<dataset>/instances.json        COCO dict: images, annotations, categories
    <root>/<dataset>/refs(<split_by>).p    pickled list of ref dicts
    <root>/images/mscoco/images/train2014/ COCO train2014 JPEGs (``image_dir=`` overrides)

``split_by`` defaults to ``unc`` for refcoco and refcoco+ (splits train/val/testA/testB) and to
``umd`` for refcocog (train/val/test); ``google`` is selectable where it exists (refcoco:
train/val/test, refcocog: train/val). Split filtering follows refer: ``testA`` also keeps refs
marked ``testAB``, ``test`` keeps every ``test*`` split.

Masks: a polygon annotation's parts are rasterised with ``frPyObjects`` and combined with
``pycocotools.mask.merge`` (a union), never summed as vendored refer copies do
(``np.sum(m, axis=2)`` gives 2 where parts overlap, which later reads as background).
Uncompressed RLE (``counts`` a list) goes through ``frPyObjects``; compressed RLE (``counts`` a
str or bytes) is decoded as is.
"""

from __future__ import annotations

import io
import json
import os
import pickle
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

from l2l_env.data.cache import config_key
from l2l_env.data.types import Box, ObjectInfo, RefRecord, RefTable

DATASETS: tuple[str, ...] = ("refcoco", "refcoco+", "refcocog")
DEFAULT_SPLIT_BY: dict[str, str] = {"refcoco": "unc", "refcoco+": "unc", "refcocog": "umd"}
SPLITS_BY: dict[tuple[str, str], tuple[str, ...]] = {
    ("refcoco", "unc"): ("train", "val", "testA", "testB"),
    ("refcoco", "google"): ("train", "val", "test"),
    ("refcoco+", "unc"): ("train", "val", "testA", "testB"),
    ("refcocog", "umd"): ("train", "val", "test"),
    ("refcocog", "google"): ("train", "val"),
}
IMAGE_SUBDIR = Path("images") / "mscoco" / "images" / "train2014"
REF_KEYS: tuple[str, ...] = ("ref_id", "ann_id", "image_id", "split", "sentences")
OPTIONS: tuple[str, ...] = ("split_by", "image_dir")


# --------------------------------------------------------------------------- masks

def segmentation_to_rles(segmentation: Any, height: int, width: int,
                         where: str = "segmentation") -> list[dict]:
    """The compressed RLEs of a COCO ``segmentation`` (polygons, uncompressed or compressed RLE).

    ``where`` names the annotation in error messages. Polygon parts with fewer than three points
    have no area and are dropped (pycocotools would read a 4-number part as a box).
    """
    if isinstance(segmentation, dict):
        parts: list = [segmentation]
    elif isinstance(segmentation, (list, tuple)):
        parts = list(segmentation)
    else:
        raise ValueError(f"{where}: expected a list of polygons or an RLE dict, "
                         f"got {type(segmentation).__name__}")
    if not parts:
        return []
    if all(isinstance(p, dict) for p in parts):
        return [_rle_part(p, height, width, where) for p in parts]
    if not all(isinstance(p, (list, tuple)) for p in parts):
        raise ValueError(f"{where}: expected every part to be a polygon (list of numbers) or every "
                         f"part an RLE dict, got {[type(p).__name__ for p in parts]}")
    polygons = []
    for k, part in enumerate(parts):
        if len(part) % 2:
            raise ValueError(f"{where}: polygon part {k} has {len(part)} numbers; expected "
                             "an even count (x1, y1, x2, y2, ...)")
        if len(part) >= 6:
            polygons.append([float(v) for v in part])
    if not polygons:
        return []
    return list(mask_utils.frPyObjects(polygons, height, width))


def _rle_part(rle: dict, height: int, width: int, where: str) -> dict:
    if "counts" not in rle or "size" not in rle:
        raise ValueError(f"{where}: RLE dict needs 'counts' and 'size', got keys {sorted(rle)}")
    size = [int(v) for v in rle["size"]]
    if size != [height, width]:
        raise ValueError(f"{where}: RLE size {size} differs from the image's [height, width] "
                         f"[{height}, {width}]")
    counts = rle["counts"]
    if isinstance(counts, (list, tuple)):  # uncompressed
        total = int(np.sum(np.asarray(counts, dtype=np.int64)))
        if total != height * width:
            raise ValueError(f"{where}: uncompressed RLE counts sum to {total}; expected "
                             f"height*width = {height * width}")
        return mask_utils.frPyObjects({"size": size, "counts": list(counts)}, height, width)
    if isinstance(counts, str):
        counts = counts.encode("ascii")
    if not isinstance(counts, bytes):
        raise ValueError(f"{where}: RLE counts must be a list (uncompressed) or str/bytes "
                         f"(compressed), got {type(counts).__name__}")
    return {"size": size, "counts": counts}


def decode_segmentation(segmentation: Any, height: int, width: int,
                        where: str = "segmentation") -> np.ndarray:
    """A COCO ``segmentation`` as an HxW bool mask; parts are merged (union), never summed."""
    rles = segmentation_to_rles(segmentation, height, width, where)
    if not rles:
        return np.zeros((height, width), dtype=bool)
    merged = rles[0] if len(rles) == 1 else mask_utils.merge(rles, intersect=False)
    return np.ascontiguousarray(mask_utils.decode(merged), dtype=bool)


@dataclass(frozen=True)
class AnnotationMask:
    """A lazy mask: calling it decodes one annotation to HxW bool (picklable, unlike a lambda)."""

    segmentation: Any
    height: int
    width: int
    where: str = "segmentation"

    def __call__(self) -> np.ndarray:
        return decode_segmentation(self.segmentation, self.height, self.width, self.where)


# --------------------------------------------------------------------------- images

@dataclass(frozen=True)
class ImageReader:
    """Reads a split's COCO images by id as HxWx3 uint8 RGB (grayscale/RGBA converted).

    ``records`` maps image id to ``(file_name, height, width)`` from ``instances.json``; an image
    whose size differs from its record is an error (its masks would not line up). EXIF
    orientation is not applied: COCO annotations are in stored pixel order.
    """

    image_dir: Path
    records: Mapping[int, tuple[str, int, int]]

    def path(self, image_id: int) -> Path:
        if int(image_id) not in self.records:
            raise KeyError(f"image id {image_id} is not an image of this split")
        return self.image_dir / self.records[int(image_id)][0]

    def existing_path(self, image_id: int) -> Path:
        """The image's file; ``FileNotFoundError`` naming it and the image folder when missing."""
        path = self.path(image_id)
        if not path.is_file():
            raise FileNotFoundError(
                f"COCO image {path} (image_id {image_id}) does not exist; expected the train2014 "
                f"images in {self.image_dir} (pass image_dir=... to read them elsewhere)")
        return path

    def check(self, image_id: int) -> None:
        """Open the image's header only (cheap): a missing, unreadable or wrong-sized file is a
        clear error naming it, before any long work."""
        path = self.existing_path(image_id)
        _, height, width = self.records[int(image_id)]
        try:
            with Image.open(path) as img:
                size = img.size
                img.verify()
        except (OSError, ValueError, SyntaxError) as err:
            raise ValueError(f"cannot read image {path} (image_id {image_id}): {err}") from None
        if size != (width, height):
            raise ValueError(f"image {path} is {size[0]}x{size[1]} (WxH) but its instances.json "
                             f"record says {width}x{height}")

    def fingerprint(self) -> str:
        """A key of the image files (folder, names, recorded sizes, byte sizes and modification
        times): a cache of decoded images keyed by it is rebuilt when any file changes."""

        entries = []
        for image_id in sorted(self.records):
            stat = self.existing_path(image_id).stat()
            name, height, width = self.records[image_id]
            entries.append([image_id, name, height, width, stat.st_size, stat.st_mtime_ns])
        return config_key({"dir": str(self.image_dir.resolve()), "files": entries}, 32)

    def __call__(self, image_id: int) -> np.ndarray:
        path = self.existing_path(image_id)
        _, height, width = self.records[int(image_id)]
        try:
            with Image.open(path) as img:
                array = np.array(img.convert("RGB"), dtype=np.uint8)
        except (OSError, ValueError) as err:
            raise ValueError(f"cannot read image {path} (image_id {image_id}): {err}") from None
        if array.shape[:2] != (height, width):
            raise ValueError(f"image {path} is {array.shape[1]}x{array.shape[0]} (WxH) but its "
                             f"instances.json record says {width}x{height}")
        return array


# --------------------------------------------------------------------------- files

_PICKLE_ALLOWED: dict[str, frozenset[str]] = {
    "builtins": frozenset({"set", "frozenset", "bytes", "bytearray", "complex", "list", "dict",
                           "tuple", "str", "int", "float", "bool", "object"}),
    "__builtin__": frozenset({"set", "frozenset", "bytearray", "complex", "list", "dict", "tuple",
                              "str", "int", "float", "bool", "object", "unicode", "long"}),
    "copy_reg": frozenset({"_reconstructor"}),
    "copyreg": frozenset({"_reconstructor"}),
    "_codecs": frozenset({"encode"}),
    "collections": frozenset({"OrderedDict"}),
    "numpy": frozenset({"dtype", "ndarray"}),
    "numpy.core.multiarray": frozenset({"scalar", "_reconstruct"}),
    "numpy._core.multiarray": frozenset({"scalar", "_reconstruct"}),
}


class _RefsUnpickler(pickle.Unpickler):
    """Loads plain data only: a refs file that names any other class is refused."""

    def find_class(self, module: str, name: str) -> Any:
        if name in _PICKLE_ALLOWED.get(module, ()):
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"it references {module}.{name}; a refs file holds only "
                                     "lists, dicts, strings and numbers")


def _bytes_to_str(obj: Any) -> Any:
    """Python 2 ``str`` values read as bytes, decoded as UTF-8 throughout ``obj``."""
    if isinstance(obj, bytes):
        return obj.decode("utf-8", errors="replace")
    if isinstance(obj, list):
        return [_bytes_to_str(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_bytes_to_str(v) for v in obj)
    if isinstance(obj, dict):
        return {_bytes_to_str(k): _bytes_to_str(v) for k, v in obj.items()}
    return obj


def read_refs(path: Path) -> list[dict]:
    """Read and check a ``refs(<split_by>).p`` file: a pickled list of ref dicts."""
    path = Path(path)
    expected = "a pickled list of ref dicts (ref_id, ann_id, image_id, split, sentences, ...)"
    try:
        blob = path.read_bytes()
    except FileNotFoundError:
        raise FileNotFoundError(f"refs file {path} does not exist; expected {expected}") from None
    try:
        try:
            refs = _RefsUnpickler(io.BytesIO(blob)).load()
        except UnicodeDecodeError:  # a Python 2 pickle with non-ASCII byte strings
            refs = _bytes_to_str(_RefsUnpickler(io.BytesIO(blob), encoding="bytes").load())
    except Exception as err:  # pickle raises many kinds on corrupt input
        raise ValueError(f"refs file {path} is not a readable pickle ({type(err).__name__}: "
                         f"{err}); expected {expected}") from None
    if not isinstance(refs, list):
        raise ValueError(f"refs file {path} holds a {type(refs).__name__}; expected {expected}")
    for k, ref in enumerate(refs):
        if not isinstance(ref, dict):
            raise ValueError(f"refs file {path}: entry {k} is a {type(ref).__name__}; "
                             f"expected {expected}")
        missing = [key for key in REF_KEYS if key not in ref]
        if missing:
            raise ValueError(f"refs file {path}: ref {k} (ref_id {ref.get('ref_id')!r}) lacks "
                             f"keys {missing}; expected {expected}")
    return refs


def read_instances(path: Path) -> dict:
    """Read and check ``instances.json``: a COCO dict with images, annotations and categories."""
    path = Path(path)
    expected = "a COCO JSON dict with 'images', 'annotations' and 'categories'"
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FileNotFoundError(f"instances file {path} does not exist; expected {expected}") \
            from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"instances file {path} is not valid JSON ({err}); expected {expected}") \
            from None
    if not isinstance(data, dict):
        raise ValueError(f"instances file {path} holds a {type(data).__name__}; "
                         f"expected {expected}")
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            found = "is missing" if key not in data else f"is a {type(data[key]).__name__}"
            raise ValueError(f"instances file {path}: key {key!r} {found}; expected {expected} "
                             "(each a list)")
    return data


def _index(items: list, keys: tuple[str, ...], path: Path, what: str) -> dict[int, dict]:
    """``{item['id']: item}``, checking that every item has ``keys``."""
    out: dict[int, dict] = {}
    for k, item in enumerate(items):
        if not isinstance(item, dict) or any(key not in item for key in keys):
            raise ValueError(f"instances file {path}: {what} entry {k} is not a dict with keys "
                             f"{list(keys)}: {str(item)[:120]}")
        out[int(item["id"])] = item
    return out


# --------------------------------------------------------------------------- data set

class ReferDataset:
    """One refer data set (``dataset`` + ``split_by``) under ``data_root``.

    The refs pickle and ``instances.json`` are parsed on first use and kept on this object, so
    several splits read from one instance parse the files once.
    """

    def __init__(self, data_root: str | os.PathLike, dataset: str = "refcoco",
                 split_by: str | None = None, image_dir: str | os.PathLike | None = None) -> None:
        if dataset not in DATASETS:
            raise ValueError(f"unknown refer dataset {dataset!r}; expected one of {DATASETS}")
        split_by = DEFAULT_SPLIT_BY[dataset] if split_by is None else str(split_by)
        if (dataset, split_by) not in SPLITS_BY:
            known = [s for d, s in SPLITS_BY if d == dataset]
            raise ValueError(f"unknown split_by {split_by!r} for {dataset}; "
                             f"expected one of {known}")
        self.data_root = Path(data_root)
        self.dataset = dataset
        self.split_by = split_by
        self.image_dir = Path(image_dir) if image_dir is not None else self.data_root / IMAGE_SUBDIR

    @property
    def splits(self) -> tuple[str, ...]:
        """The split names this ``dataset``/``split_by`` offers."""
        return SPLITS_BY[(self.dataset, self.split_by)]

    @property
    def refs_path(self) -> Path:
        return self.data_root / self.dataset / f"refs({self.split_by}).p"

    @property
    def instances_path(self) -> Path:
        return self.data_root / self.dataset / "instances.json"

    @cached_property
    def refs(self) -> list[dict]:
        return read_refs(self.refs_path)

    @cached_property
    def _instances(self) -> tuple[dict[int, dict], dict[int, dict], dict[int, str],
                                  dict[int, list[dict]]]:
        path = self.instances_path
        data = read_instances(path)
        images = _index(data["images"], ("id", "file_name", "height", "width"), path, "images")
        anns = _index(data["annotations"], ("id", "image_id", "bbox", "category_id",
                                             "segmentation"), path, "annotations")
        cats = {i: str(c.get("name", i)) for i, c in
                _index(data["categories"], ("id",), path, "categories").items()}
        by_image: dict[int, list[dict]] = {}
        for ann_id in sorted(anns):
            by_image.setdefault(int(anns[ann_id]["image_id"]), []).append(anns[ann_id])
        return images, anns, cats, by_image

    def ref_dicts(self, split: str) -> list[dict]:
        """The raw refs of ``split`` (refer's rule: ``testA`` keeps ``testAB``, ``test`` keeps
        every ``test*``)."""
        if split not in self.splits:
            raise ValueError(f"unknown split {split!r} for {self.dataset} split_by "
                             f"{self.split_by}; expected one of {self.splits}")
        if split in ("testA", "testB", "testC"):
            keep = [r for r in self.refs if str(r["split"]).startswith("test")
                    and split[-1] in str(r["split"])[4:]]
        elif split == "test":
            keep = [r for r in self.refs if "test" in str(r["split"])]
        else:
            keep = [r for r in self.refs if r["split"] == split]
        if not keep:
            present = sorted({str(r["split"]) for r in self.refs})
            raise ValueError(f"refs file {self.refs_path} has no refs of split {split!r}; "
                             f"its splits are {present}")
        return keep

    def _category(self, ann: dict) -> str:
        _, _, cats, _ = self._instances
        cat_id = int(ann["category_id"])
        if cat_id not in cats:
            raise ValueError(f"instances file {self.instances_path}: annotation {ann['id']} has "
                             f"category_id {cat_id}, not in 'categories'")
        return cats[cat_id]

    def table(self, split: str) -> RefTable:
        """The :class:`RefTable` of ``split``: one :class:`RefRecord` per ref."""
        images, anns, _, by_image = self._instances
        raw = self.ref_dicts(split)
        objects: dict[int, tuple[ObjectInfo, ...]] = {}
        positions: dict[int, dict[int, int]] = {}
        records: list[RefRecord] = []
        for ref in raw:
            ref_id, ann_id, image_id = int(ref["ref_id"]), int(ref["ann_id"]), int(ref["image_id"])
            where = f"refs file {self.refs_path}: ref {ref_id}"
            if image_id not in images:
                raise ValueError(f"{where} names image_id {image_id}, not in "
                                 f"{self.instances_path} 'images'")
            if ann_id not in anns:
                raise ValueError(f"{where} names ann_id {ann_id}, not in "
                                 f"{self.instances_path} 'annotations'")
            ann = anns[ann_id]
            if int(ann["image_id"]) != image_id:
                raise ValueError(f"{where}: image_id {image_id} but its annotation {ann_id} is "
                                 f"on image {ann['image_id']}")
            if image_id not in objects:
                image_anns = by_image[image_id]
                size = int(images[image_id]["height"]), int(images[image_id]["width"])
                objects[image_id] = tuple(
                    ObjectInfo(box=_box(a, self.instances_path), category=self._category(a),
                               mask=AnnotationMask(a["segmentation"], *size,
                                                   f"{self.instances_path} annotation {a['id']}"))
                    for a in image_anns)
                positions[image_id] = {int(a["id"]): k for k, a in enumerate(image_anns)}
            image = images[image_id]
            records.append(RefRecord(
                ref_id=ref_id,
                image_id=image_id,
                box=_box(ann, self.instances_path),
                sentences=_sentences(ref, where),
                mask=AnnotationMask(ann["segmentation"], int(image["height"]),
                                    int(image["width"]),
                                    f"{self.instances_path} annotation {ann_id}"),
                objects=objects[image_id],
                referent=positions[image_id][ann_id],
                category=self._category(ann),
            ))
        reader = ImageReader(self.image_dir, {
            i: (str(images[i]["file_name"]), int(images[i]["height"]), int(images[i]["width"]))
            for i in sorted(objects)})
        return RefTable(self.dataset, split, records, reader,
                        (str(self.refs_path), str(self.instances_path)))


def _box(ann: dict, path: Path) -> Box:
    bbox = ann["bbox"]
    if not isinstance(bbox, (list, tuple)) or len(bbox) != 4:
        raise ValueError(f"instances file {path}: annotation {ann['id']} bbox {bbox!r}; expected "
                         "[x, y, w, h]")
    x, y, w, h = (float(v) for v in bbox)
    return (x, y, w, h)


def _sentences(ref: dict, where: str) -> tuple[tuple[int, str], ...]:
    sents = ref["sentences"]
    if not isinstance(sents, list) or not sents:
        raise ValueError(f"{where}: 'sentences' is {sents!r}; expected a non-empty list of "
                         "{'sent_id', 'sent', ...} dicts")
    out = []
    for s in sents:
        if not isinstance(s, dict) or "sent_id" not in s or "sent" not in s:
            raise ValueError(f"{where}: sentence {str(s)[:80]} is not a dict with 'sent_id' and "
                             "'sent'")
        text = s["sent"]
        if isinstance(text, bytes):
            text = text.decode("utf-8", errors="replace")
        out.append((int(s["sent_id"]), str(text)))
    return tuple(out)


def load_table(dataset: str, split: str, data_root: str | os.PathLike | None = None, *,
               split_by: str | None = None, image_dir: str | os.PathLike | None = None,
               **unknown: Any) -> RefTable:
    """The :class:`RefTable` of ``split`` of ``dataset`` (refcoco, refcoco+ or refcocog).

    :param data_root: the refer data root (see the module docstring for the layout).
    :param split_by: ``unc`` / ``umd`` / ``google``; the data set's usual one by default.
    :param image_dir: where the COCO train2014 images are, if not under ``data_root``.
    """
    if unknown:
        raise TypeError(f"unknown {dataset} option(s) {sorted(unknown)}; expected {list(OPTIONS)}")
    if dataset not in DATASETS:
        raise ValueError(f"unknown refer dataset {dataset!r}; expected one of {DATASETS}")
    if data_root is None:
        sb = DEFAULT_SPLIT_BY[dataset] if split_by is None else split_by
        raise ValueError(
            f"{dataset} needs --data-root DIR containing {dataset}/instances.json and "
            f"{dataset}/refs({sb}).p (the refer layout), with the COCO train2014 images in "
            f"DIR/{IMAGE_SUBDIR.as_posix()} or in image_dir=...")
    return ReferDataset(data_root, dataset, split_by=split_by, image_dir=image_dir).table(split)
