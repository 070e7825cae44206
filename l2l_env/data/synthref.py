"""SynthRef: the built-in procedural referring-segmentation benchmark.

Scenes of 2-6 coloured shapes on textured backgrounds (see :mod:`synthref_scene`), each with 1-3
referred objects and 1-3 phrases per referred object, built from logical forms whose uniqueness is
checked on the scene (see :mod:`synthref_grammar`). Splits mirror RefCOCO: ``train``, ``val`` (a
natural mix of distractors), ``testA`` (every referent has a distractor of its shape) and
``testB`` (every referent has a distractor of its colour).

Generation is seeded per scene (``(seed, split, scene index)``) and cached on disk under
``cache_dir(data_root)/synthref/<key>/<split>.npz`` (images, label maps, index arrays) plus
``<split>.json`` (objects, phrases and their logical forms), where ``key`` hashes the config and
:data:`GENERATOR_VERSION`. :func:`load_table` gives the :class:`RefTable` that
``load_split("synthref", split)`` serves; :func:`load_arrays` gives whole arrays at once.
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from l2l_env.data.cache import atomic_write_bytes, cache_dir, config_key
from l2l_env.data.synthref_grammar import KINDS, LogicalForm, SceneObject, candidate_forms, realise
from l2l_env.data.synthref_scene import Scene, sample_scene
from l2l_env.data.types import ObjectInfo, RefRecord, RefTable
from segmenter.shared.disk_cache import bytes_digest, cache_warning
from segmenter.shared.files import sweep_temporaries

GENERATOR_VERSION = 1
"""Bump when generation changes what a config produces (old caches are then ignored)."""

SPLITS: tuple[str, ...] = ("train", "val", "testA", "testB")
COMPOSITION: dict[str, str] = {"train": "mix", "val": "mix", "testA": "shape", "testB": "colour"}
ID_STRIDE = 10_000_000
"""Split ``k`` numbers its images, refs and sentences from ``k * ID_STRIDE`` (unique overall)."""
SCENE_ATTEMPTS = 100


@dataclass(frozen=True)
class SynthRefConfig:
    """What a SynthRef data set is made of. Sentence counts are per split."""

    image_size: int = 64
    num_train: int = 8000  # sentences in train
    num_eval: int = 1000  # sentences in each of val, testA, testB
    seed: int = 0
    min_objects: int = 2
    max_objects: int = 6
    min_visible: float = 0.6  # every object keeps at least this fraction of its pixels visible
    max_refs_per_image: int = 3
    max_sentences_per_ref: int = 3

    def __post_init__(self) -> None:
        if self.image_size < 24:
            raise ValueError(f"SynthRefConfig.image_size must be >= 24, got {self.image_size}")
        for name in ("num_train", "num_eval"):
            value = getattr(self, name)
            if not 1 <= value < ID_STRIDE // 2:
                raise ValueError(f"SynthRefConfig.{name} must be in [1, {ID_STRIDE // 2}), "
                                 f"got {value}")
        if not 2 <= self.min_objects <= self.max_objects <= 8:
            raise ValueError("SynthRefConfig needs 2 <= min_objects <= max_objects <= 8, got "
                             f"min_objects={self.min_objects}, max_objects={self.max_objects}")
        if not 0.0 < self.min_visible <= 1.0:
            raise ValueError(f"SynthRefConfig.min_visible must be in (0, 1], got "
                             f"{self.min_visible}")
        for name in ("max_refs_per_image", "max_sentences_per_ref"):
            if getattr(self, name) < 1:
                raise ValueError(f"SynthRefConfig.{name} must be >= 1, got {getattr(self, name)}")

    def num_sentences(self, split: str) -> int:
        return self.num_train if _split_index(split) == 0 else self.num_eval

    def key(self) -> str:
        """The cache key: a hash of the config and the generator version."""
        return config_key({**asdict(self), "generator_version": GENERATOR_VERSION})


def make_config(config: SynthRefConfig | None = None, **options: Any) -> SynthRefConfig:
    """``config`` (default: the defaults) with ``options`` replacing fields; unknown ones raise."""
    valid = [f.name for f in fields(SynthRefConfig)]
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise ValueError(f"unknown SynthRef option(s) {unknown}; valid options are {valid}")
    base = asdict(config) if config is not None else {}
    return SynthRefConfig(**{**base, **options})


def _split_index(split: str) -> int:
    try:
        return SPLITS.index(split)
    except ValueError:
        raise ValueError(f"unknown SynthRef split {split!r}; expected one of {SPLITS}") from None


@dataclass(frozen=True, eq=False)
class SynthRefData:
    """One generated split as arrays (``N`` images, ``R`` refs, ``S`` sentences).

    The mask of ref ``r`` is ``labels[ref_image_index[r]] == ref_object_index[r]``;
    :meth:`masks` computes many at once. Arrays are read-only.
    """

    split: str
    config: SynthRefConfig
    images: np.ndarray  # (N, H, W, 3) uint8
    labels: np.ndarray  # (N, H, W) int8, visible object index per pixel, -1 background
    image_ids: np.ndarray  # (N,) int64
    objects: tuple[tuple[SceneObject, ...], ...]  # per image, in drawing order
    ref_ids: np.ndarray  # (R,) int64
    ref_image_index: np.ndarray  # (R,) int64, row of the ref's image in ``images``
    ref_object_index: np.ndarray  # (R,) int64, index of the referent in its image's objects
    sent_ids: np.ndarray  # (S,) int64
    sent_ref_index: np.ndarray  # (S,) int64, row of the sentence's ref in ``ref_ids``
    texts: tuple[str, ...]  # (S,)
    forms: tuple[LogicalForm, ...]  # (S,) the logical form each sentence words

    @property
    def kinds(self) -> tuple[str, ...]:
        return tuple(f.kind for f in self.forms)

    def masks(self, refs: np.ndarray | None = None) -> np.ndarray:
        """Masks ``(len(refs), H, W)`` bool of the given ref rows (default: all refs)."""
        rows = np.arange(len(self.ref_ids)) if refs is None else np.asarray(refs)
        return self.labels[self.ref_image_index[rows]] == \
            self.ref_object_index[rows].astype(np.int8)[:, None, None]

    def to_table(self) -> RefTable:
        """The records view used by :func:`l2l_env.data.load_split`."""
        row_of = {int(i): k for k, i in enumerate(self.image_ids.tolist())}
        images, labels = self.images, self.labels
        sentences: list[list[tuple[int, str]]] = [[] for _ in range(len(self.ref_ids))]
        for sid, r, text in zip(self.sent_ids.tolist(), self.sent_ref_index.tolist(), self.texts):
            sentences[r].append((sid, text))
        infos = [tuple(ObjectInfo(box=tuple(float(b) for b in o.box), category=o.shape,
                                  attributes={"colour": o.colour, "shape": o.shape,
                                              "size": o.size},
                                  mask=_MaskLoader(labels, img, k)) for k, o in enumerate(objs))
                 for img, objs in enumerate(self.objects)]
        refs = []
        for r, (ref_id, img, obj) in enumerate(zip(self.ref_ids.tolist(),
                                                   self.ref_image_index.tolist(),
                                                   self.ref_object_index.tolist())):
            refs.append(RefRecord(
                ref_id=ref_id, image_id=int(self.image_ids[img]), box=infos[img][obj].box,
                sentences=tuple(sentences[r]), mask=_MaskLoader(labels, img, obj),
                objects=infos[img], referent=obj, category=self.objects[img][obj].shape))
        source = f"synthref/{self.config.key()}/{self.split}"
        return RefTable("synthref", self.split, refs, _ImageLoader(images, row_of, source))


@dataclass(frozen=True, eq=False)
class _ImageLoader:
    """``image_id -> HxWx3 uint8`` by indexing the in-memory image array (picklable)."""

    images: np.ndarray
    row_of: dict[int, int]
    source: str
    """What the images are (the generation config's key and the split): keys the image cache."""

    def fingerprint(self) -> str:
        """A name of the images' source, for keying caches of derived arrays."""
        return self.source

    def __call__(self, image_id: int) -> np.ndarray:
        try:
            return self.images[self.row_of[int(image_id)]]
        except KeyError:
            raise KeyError(f"SynthRef has no image with id {image_id}") from None


@dataclass(frozen=True, eq=False)
class _MaskLoader:
    """The mask of one object, cut from the label maps on demand."""

    labels: np.ndarray
    image: int
    obj: int

    def __call__(self) -> np.ndarray:
        return self.labels[self.image] == self.obj


# ---------------------------------------------------------------------------------------------
# Generation


def _eligible(objects: tuple[SceneObject, ...], composition: str) -> list[int]:
    """Objects that may be referred to: in testA/testB only those with the required distractor."""
    if composition == "mix":
        return list(range(len(objects)))
    attr = "shape" if composition == "shape" else "colour"
    return [i for i, o in enumerate(objects)
            if any(j != i and p.attribute(attr) == o.attribute(attr)
                   for j, p in enumerate(objects))]


def _phrases(objects: tuple[SceneObject, ...], referent: int, count: int, image_size: int,
             rng: np.random.Generator, kind_counts: dict[str, int],
             ) -> list[tuple[LogicalForm, str]]:
    """Up to ``count`` distinct (form, text) pairs for one referent, kinds kept in balance.

    Kinds are tried in order of how rarely they were used so far in the split (kinds already
    used for this referent last), so the mix stays balanced where scenes allow it.
    """
    cache: dict[str, list[LogicalForm]] = {}
    out: list[tuple[LogicalForm, str]] = []
    used: set[str] = set()
    for _ in range(count):
        ties = rng.random(len(KINDS))
        order = sorted(range(len(KINDS)),
                       key=lambda k: (KINDS[k] in used, kind_counts[KINDS[k]], ties[k]))
        for k in order:
            kind = KINDS[k]
            if kind not in cache:
                preferred, fallback = candidate_forms(kind, objects, referent, image_size, rng)
                cache[kind] = preferred or fallback
            pool = cache[kind]
            if not pool:
                continue
            texts = {t for _, t in out}
            for _ in range(4):
                form = pool[int(rng.integers(len(pool)))]
                text = realise(form, rng)
                if text not in texts:
                    break
            else:
                continue
            out.append((form, text))
            used.add(kind)
            kind_counts[kind] += 1
            break
    return out


def _scene_with_refs(rng: np.random.Generator, config: SynthRefConfig, composition: str,
                     kind_counts: dict[str, int],
                     ) -> tuple[Scene, list[tuple[int, list[tuple[LogicalForm, str]]]]]:
    for _ in range(SCENE_ATTEMPTS):
        count = int(rng.integers(config.min_objects, config.max_objects + 1))
        scene = sample_scene(rng, config.image_size, count, composition, config.min_visible)
        if len(scene.objects) < config.min_objects:
            continue
        eligible = _eligible(scene.objects, composition)
        wanted = int(rng.integers(1, config.max_refs_per_image + 1))
        refs = []
        for obj in rng.permutation(eligible).tolist():
            if len(refs) == wanted:
                break
            n_sent = int(rng.integers(1, config.max_sentences_per_ref + 1))
            phrases = _phrases(scene.objects, obj, n_sent, config.image_size, rng, kind_counts)
            if phrases:
                refs.append((obj, phrases))
        if refs:
            return scene, refs
    raise RuntimeError(f"SynthRef could not make a scene with a describable referent in "
                       f"{SCENE_ATTEMPTS} attempts (composition {composition!r}); check the "
                       f"config's min_objects/max_objects/min_visible")


def generate_split(config: SynthRefConfig, split: str, progress: bool | None = None,
                   ) -> SynthRefData:
    """Generate one split (no caching). The last scene is trimmed to the exact sentence count.

    ``progress``: show a progress bar (``None``: only on a terminal).
    """
    k = _split_index(split)
    composition = COMPOSITION[split]
    target = config.num_sentences(split)
    base = k * ID_STRIDE
    images, labels, objects = [], [], []
    ref_ids, ref_img, ref_obj, sent_ids, sent_ref, texts, forms = [], [], [], [], [], [], []
    kind_counts = {kind: 0 for kind in KINDS}
    disable = None if progress is None else not progress
    bar = tqdm(total=target, desc=f"SynthRef {split}", unit="sent", disable=disable, leave=False)
    scene_index = 0
    while len(texts) < target:
        rng = np.random.default_rng([config.seed, k, scene_index])
        scene, refs = _scene_with_refs(rng, config, composition, kind_counts)
        row = len(images)
        images.append(scene.image)
        labels.append(scene.labels)
        objects.append(scene.objects)
        for obj, phrases in refs:
            phrases = phrases[:target - len(texts)]
            if not phrases:
                break
            ref_ids.append(base + len(ref_ids))
            ref_img.append(row)
            ref_obj.append(obj)
            for form, text in phrases:
                sent_ids.append(base + len(sent_ids))
                sent_ref.append(len(ref_ids) - 1)
                texts.append(text)
                forms.append(form)
            bar.update(len(phrases))
        scene_index += 1
    bar.close()
    return _freeze(SynthRefData(
        split=split, config=config, images=np.stack(images), labels=np.stack(labels),
        image_ids=base + np.arange(len(images), dtype=np.int64), objects=tuple(objects),
        ref_ids=np.asarray(ref_ids, dtype=np.int64),
        ref_image_index=np.asarray(ref_img, dtype=np.int64),
        ref_object_index=np.asarray(ref_obj, dtype=np.int64),
        sent_ids=np.asarray(sent_ids, dtype=np.int64),
        sent_ref_index=np.asarray(sent_ref, dtype=np.int64), texts=tuple(texts),
        forms=tuple(forms)))


def _freeze(data: SynthRefData) -> SynthRefData:
    for f in fields(data):
        value = getattr(data, f.name)
        if isinstance(value, np.ndarray):
            value.flags.writeable = False
    return data


# ---------------------------------------------------------------------------------------------
# Cache

ARRAY_FIELDS = ("images", "labels", "image_ids", "ref_ids", "ref_image_index",
                "ref_object_index", "sent_ids", "sent_ref_index")


def split_paths(config: SynthRefConfig, split: str,
                data_root: str | os.PathLike | None = None) -> tuple[Path, Path]:
    """The cache files ``(<split>.npz, <split>.json)`` of one split."""
    _split_index(split)
    folder = cache_dir(data_root) / "synthref" / config.key()
    return folder / f"{split}.npz", folder / f"{split}.json"


def save_split(data: SynthRefData, npz_path: Path, json_path: Path) -> None:
    """Write a split atomically; the JSON (written last, with the SHA-256 of the arrays) marks the
    cache entry complete."""
    buf = io.BytesIO()
    np.savez(buf, **{name: getattr(data, name) for name in ARRAY_FIELDS})
    blob = buf.getvalue()
    atomic_write_bytes(npz_path, blob)
    meta = {
        "generator_version": GENERATOR_VERSION, "split": data.split, "config": asdict(data.config),
        "npz_sha256": bytes_digest(blob),
        "objects": [[o.to_dict() for o in objs] for objs in data.objects],
        "texts": list(data.texts), "forms": [f.to_dict() for f in data.forms],
    }
    atomic_write_bytes(json_path, json.dumps(meta, separators=(",", ":")).encode())


class CorruptCache(ValueError):
    """A cache entry that cannot be read as what it claims to be (names the file)."""


def read_split(config: SynthRefConfig, split: str, npz_path: Path, json_path: Path,
               ) -> SynthRefData:
    """Read a split written by :func:`save_split`, verifying the arrays against the checksum in
    the JSON; raises :class:`CorruptCache` naming the file at fault."""
    at = json_path
    try:
        meta = json.loads(json_path.read_text())
        if not isinstance(meta, dict):
            raise ValueError(f"expected a JSON object, got {type(meta).__name__}")
        at = npz_path
        blob = npz_path.read_bytes()
        digest = meta.get("npz_sha256")
        if digest is not None and bytes_digest(blob) != digest:
            raise ValueError("the arrays do not match the checksum in "
                             f"{json_path.name} (truncated or overwritten)")
        with np.load(io.BytesIO(blob)) as npz:
            arrays = {name: npz[name] for name in ARRAY_FIELDS}
        at = json_path
        return _freeze(SynthRefData(
            split=split, config=config, **arrays,
            objects=tuple(tuple(SceneObject.from_dict(o) for o in objs) for objs in meta["objects"]),
            texts=tuple(meta["texts"]), forms=tuple(LogicalForm.from_dict(f) for f in meta["forms"])))
    except (OSError, ValueError, KeyError, TypeError, AttributeError, EOFError,
            zipfile.BadZipFile) as err:
        raise CorruptCache(f"SynthRef cache file {at} (split {split!r}) is corrupt "
                           f"({type(err).__name__}: {err})") from None


def load_arrays(split: str, data_root: str | os.PathLike | None = None, *,
                config: SynthRefConfig | None = None, regenerate: bool = False,
                progress: bool | None = None, **options: Any) -> SynthRefData:
    """One split as arrays, generated on first use and read from the cache afterwards; a corrupt
    cache entry is reported (with its path) and generated again.

    ``data_root`` is the cache root (``None``: :func:`l2l_env.data.cache.cache_dir`).
    ``options`` replace fields of ``config`` (e.g. ``num_train=200, image_size=64, seed=1``).
    """
    cfg = make_config(config, **options)
    npz_path, json_path = split_paths(cfg, split, data_root)
    sweep_temporaries(npz_path.parent)
    if not regenerate and npz_path.exists() and json_path.exists():
        try:
            return read_split(cfg, split, npz_path, json_path)
        except CorruptCache as err:
            cache_warning(f"{err}; generating it again")
    data = generate_split(cfg, split, progress=progress)
    save_split(data, npz_path, json_path)
    return data


def load_table(split: str, data_root: str | os.PathLike | None = None, *,
               config: SynthRefConfig | None = None, regenerate: bool = False,
               progress: bool | None = None, **options: Any) -> RefTable:
    """The :class:`RefTable` of one SynthRef split (see :func:`load_arrays` for arguments)."""
    return load_arrays(split, data_root, config=config, regenerate=regenerate,
                       progress=progress, **options).to_table()
