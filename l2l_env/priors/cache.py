"""The prior cache: groundings computed once, appended to JSONL, read back by sample id.

File format (``l2l-priors/1``), one JSON object per line::

    {"format": "l2l-priors/1", "provider": {...provider config...}, ...}      <- header
    {"id": "12:34", "check": "9f1c0a2e", "box": [x, y, w, h], "score": 0.93, ...}

``score`` is the provider's confidence in its grounding (an MLLM's token probability, a detector's
score, the simulator's calibrated one); a line without it (a cache written before scores were
recorded) reads as 1. A provider that segments the phrase adds ``mask`` (COCO RLE counts in
pixels of ``image_size``). ``id`` is the sample id ``"ref_id:sent_id"``; ``check`` is a short
hash of what the prior was
computed from (image id, phrase, referent box), so an entry of another version of the data is
recomputed rather than trusted; ``sum`` (last) is the checksum of the entry, so an entry whose
bytes changed is named and recomputed too. Lines are appended in chunks, each flushed to disk,
so a killed run loses at most one chunk; :func:`compute_priors` resumes, skipping done samples. A last line cut
short by a kill (no trailing newline) is dropped on resume and when reading; any other bad line
is an error naming the file and line. Later lines win over earlier ones with the same id.

Sharding: ``shard=(i, n)`` computes samples ``k`` with ``k % n == i`` into
``FILE.shard-i-of-n``; :func:`read_priors` reads ``FILE`` plus its shards, and
:func:`merge_shards` folds the shards into ``FILE``. :func:`shard_from_env` reads a torchrun
launch (``RANK``/``WORLD_SIZE``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from l2l_env.data.cache import atomic_write_bytes
from l2l_env.data.types import RefSplit, ReferringSample
from l2l_env.priors.base import Grounding, PriorProvider
from segmenter.shared.disk_cache import cache_warning, content_key
from segmenter.shared.files import sweep_temporaries

FORMAT = "l2l-priors/1"
_SHARD_RE = re.compile(r"\.shard-(\d+)-of-(\d+)$")


class CacheError(ValueError):
    """A prior cache file that cannot be used (corrupt, or computed with another provider)."""


class MissingPriorError(KeyError):
    """Sample ids that a prior cache or table does not hold."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


@dataclass
class PriorEntries:
    """The content of one or more cache files: groundings and checks by sample id."""

    groundings: dict[str, Grounding] = field(default_factory=dict)
    checks: dict[str, str] = field(default_factory=dict)
    header: dict[str, Any] | None = None
    damaged: int = 0
    """Entries left out because they did not match their checksum."""

    def update(self, other: PriorEntries) -> None:
        self.groundings.update(other.groundings)
        self.checks.update(other.checks)
        if self.header is None:
            self.header = other.header


# -- sharding ----------------------------------------------------------------------------------

def parse_shard(spec: str) -> tuple[int, int]:
    """``"i/n"`` -> ``(i, n)`` with ``0 <= i < n``."""
    try:
        i, n = (int(v) for v in str(spec).split("/"))
    except ValueError:
        raise ValueError(f"shard must be 'i/n' (e.g. 0/4), got {spec!r}") from None
    if not (n >= 1 and 0 <= i < n):
        raise ValueError(f"shard {spec!r}: expected 0 <= i < n")
    return i, n


def shard_from_env(environ: dict[str, str] | None = None) -> tuple[int, int] | None:
    """``(RANK, WORLD_SIZE)`` of a torchrun launch, or ``None`` outside one."""
    env = os.environ if environ is None else environ
    if "WORLD_SIZE" not in env:
        return None
    world, rank = int(env["WORLD_SIZE"]), int(env.get("RANK", "0"))
    return (rank, world) if world > 1 else None


def shard_indices(count: int, shard: tuple[int, int] = (0, 1)) -> list[int]:
    """The sample positions of ``shard`` among ``count`` (round robin: ``k % n == i``)."""
    i, n = shard
    return list(range(i, count, n))


def shard_path(path: str | os.PathLike, shard: tuple[int, int] = (0, 1)) -> Path:
    """``FILE`` for one shard, ``FILE.shard-i-of-n`` otherwise."""
    path = Path(path)
    i, n = shard
    return path if n == 1 else path.with_name(f"{path.name}.shard-{i}-of-{n}")


def shard_files(path: str | os.PathLike) -> list[Path]:
    """The existing shard files of ``FILE``, sorted by shard."""
    path = Path(path)
    if not path.parent.is_dir():
        return []
    found = []
    for p in path.parent.glob(f"{path.name}.shard-*-of-*"):
        m = _SHARD_RE.search(p.name)
        if m and p.name[: m.start()] == path.name:
            found.append((int(m.group(2)), int(m.group(1)), p))
    return [p for _, _, p in sorted(found)]


# -- reading -----------------------------------------------------------------------------------

def entry_line(entry: dict[str, Any]) -> str:
    """One JSONL line of ``entry`` with its checksum (``sum``)."""
    return json.dumps({**entry, "sum": content_key(entry, 16)})


def entry_intact(obj: dict[str, Any]) -> bool:
    """Whether an entry matches its checksum (entries written without one are taken as is)."""
    if "sum" not in obj:
        return True
    return content_key({k: v for k, v in obj.items() if k != "sum"}, 16) == obj["sum"]


def _parse_lines(path: Path, data: bytes) -> tuple[PriorEntries, int]:
    """Entries of one file and the number of bytes that hold complete lines."""
    end = data.rfind(b"\n") + 1  # after the last newline: empty, or a write cut short by a kill
    lines = data[:end].decode("utf-8", errors="replace").split("\n")[:-1]
    try:  # one parse for the whole file; line by line only to find a bad line
        objects = json.loads("[" + ",".join(lines) + "]")
        if len(objects) != len(lines):
            raise ValueError("a line holds more than one value")
    except ValueError:
        objects = None
    entries = PriorEntries()
    for number, line in enumerate(lines, start=1):
        try:
            obj = objects[number - 1] if objects is not None else json.loads(line)
            if not isinstance(obj, dict):
                raise ValueError("not a JSON object")
            if "format" in obj:
                if obj["format"] != FORMAT:
                    raise ValueError(f"unknown format {obj['format']!r}, expected {FORMAT!r}")
                if entries.header is None:
                    entries.header = obj
            elif not entry_intact(obj):
                entries.damaged += 1
            else:
                sid = obj["id"]
                entries.groundings[sid] = Grounding.from_dict(obj)
                entries.checks[sid] = str(obj.get("check", ""))
        except (ValueError, KeyError, TypeError, IndexError) as err:
            raise CacheError(f"prior cache {path}, line {number}: corrupt entry ({err}); expected "
                             "a JSON object with 'id' and 'box' (delete the file to recompute)"
                             ) from None
    if entries.damaged:
        cache_warning(f"prior cache {path}: {entries.damaged} entries do not match their checksum "
                      "(corrupt); computing them again")
    if entries.groundings and entries.header is None:
        raise CacheError(f"prior cache {path} has no header line ({{\"format\": \"{FORMAT}\", ...}}): "
                         "not a file written by l2l-priors (delete it to recompute)")
    return entries, end


def read_cache_file(path: str | os.PathLike) -> PriorEntries:
    """The entries of one cache file (a cut-short last line is ignored)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise FileNotFoundError(f"prior cache {path} does not exist") from None
    return _parse_lines(path, data)[0]


def read_priors(path: str | os.PathLike) -> PriorEntries:
    """``FILE`` and its shards merged (``FILE`` may be missing when shards exist)."""
    path = Path(path)
    shards = shard_files(path)
    if not path.exists() and not shards:
        raise FileNotFoundError(f"prior cache {path} does not exist "
                                f"(nor any {path.name}.shard-*-of-*)")
    entries = read_cache_file(path) if path.exists() else PriorEntries()
    for shard in shards:
        part = read_cache_file(shard)
        _check_header(shard, part.header, entries.header)
        entries.update(part)
    return entries


def _normal(value: Any) -> Any:
    return json.loads(json.dumps(value, sort_keys=True, default=str))


def _check_header(path: Path, header: dict | None, expected: dict | None) -> None:
    if header is None or expected is None:
        return
    if _normal(header.get("provider")) != _normal(expected.get("provider")):
        raise CacheError(f"prior cache {path} was computed with provider "
                         f"{header.get('provider')!r}, not {expected.get('provider')!r}; "
                         "use another output file or delete it")


def write_entries(path: Path, entries: PriorEntries) -> None:
    """Rewrite ``path`` (atomically) with the header and entries of ``entries``."""
    lines = [json.dumps(entries.header or {"format": FORMAT})]
    for sid, g in entries.groundings.items():
        lines.append(entry_line({"id": sid, "check": entries.checks.get(sid, ""), **g.to_dict()}))
    atomic_write_bytes(path, ("\n".join(lines) + "\n").encode())


def merge_shards(path: str | os.PathLike, remove: bool = False) -> Path:
    """Fold ``FILE.shard-*`` into ``FILE`` (atomically rewritten); optionally delete the shards."""
    path = Path(path)
    shards = shard_files(path)
    write_entries(path, read_priors(path))
    if remove:
        for shard in shards:
            shard.unlink()
    return path


# -- what is computed --------------------------------------------------------------------------

def input_check(image_id: int, phrase: str, box: Sequence[float]) -> str:
    """A short hash of a prior's inputs (a changed data set invalidates its entries)."""
    blob = f"{int(image_id)}|{phrase}|{','.join(f'{float(v):.2f}' for v in box)}"
    return hashlib.sha1(blob.encode()).hexdigest()[:8]


@dataclass
class SampleSource:
    """The samples to ground: ids and checks known up front, samples fetched by position."""

    ids: list[str]
    checks: list[str]
    fetch: Callable[[Sequence[int]], list[ReferringSample]]

    def __len__(self) -> int:
        return len(self.ids)


_WITHHELD_MASK = np.zeros((0, 0), dtype=bool)


def source_of(samples: RefSplit | Sequence[ReferringSample]) -> SampleSource:
    """A :class:`SampleSource` over a :class:`RefSplit` (lazy) or a list of samples.

    From a ``RefSplit`` images are loaded once per image and masks are never loaded: the samples
    handed to a provider carry an empty mask, since priors must not see masks.
    """
    if isinstance(samples, RefSplit):
        split = samples
        records = [split.record(k) for k in range(len(split))]
        ids = [f"{ref.ref_id}:{ref.sentences[pos][0]}" for ref, pos in records]
        checks = [input_check(ref.image_id, ref.sentences[pos][1], ref.box) for ref, pos in records]

        def fetch(positions: Sequence[int]) -> list[ReferringSample]:
            images: dict[int, np.ndarray] = {}
            out = []
            for k in positions:
                ref, pos = records[k]
                if ref.image_id not in images:
                    images[ref.image_id] = split.table.load_image(ref.image_id)
                sent_id, text = ref.sentences[pos]
                out.append(ReferringSample(image=images[ref.image_id], mask=_WITHHELD_MASK,
                                           phrase=text, image_id=ref.image_id, ref_id=ref.ref_id,
                                           sent_id=sent_id, box=ref.box, objects=ref.objects,
                                           referent=ref.referent))
            return out
    else:
        items = list(samples)
        ids = [s.sample_id for s in items]
        checks = [input_check(s.image_id, s.phrase, s.box) for s in items]

        def fetch(positions: Sequence[int]) -> list[ReferringSample]:
            return [items[k] for k in positions]

    seen: set[str] = set()
    for sid in ids:
        if sid in seen:
            raise ValueError(f"sample id {sid!r} occurs twice; sample ids ('ref_id:sent_id') "
                             "must be unique")
        seen.add(sid)
    return SampleSource(ids, checks, fetch)


# -- computing ---------------------------------------------------------------------------------

@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock on ``path.lock`` (several processes filling one cache take turns)."""
    lock = path.with_name(path.name + ".lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a") as fh:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - no advisory locks on this platform
            yield
            return
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


@dataclass(frozen=True)
class ComputeResult:
    """What :func:`compute_priors` did."""

    path: Path
    computed: int
    reused: int


def _todo(entries: PriorEntries, source: SampleSource, positions: Sequence[int]) -> list[int]:
    return [k for k in positions if entries.checks.get(source.ids[k]) != source.checks[k]]


def compute_priors(provider: PriorProvider,
                   samples: RefSplit | Sequence[ReferringSample] | SampleSource,
                   out: str | os.PathLike, *, split: str | None = None,
                   shard: tuple[int, int] = (0, 1), chunk_size: int = 64,
                   header: dict[str, Any] | None = None, progress: bool = False,
                   done: PriorEntries | None = None) -> ComputeResult:
    """Ground the samples of ``shard`` into ``out`` (or its shard file), resuming a previous run.

    Only samples missing from the file (or whose inputs changed) are given to the provider, in
    chunks of ``chunk_size``, each appended and flushed before the next. ``done``: entries held
    elsewhere (e.g. other shards) that need no recomputing either.
    """
    source = samples if isinstance(samples, SampleSource) else source_of(samples)
    path = shard_path(out, shard)
    sweep_temporaries(path.parent)
    want_header = {"format": FORMAT, "provider": provider.config(), **(header or {})}
    positions = shard_indices(len(source), shard)
    with _locked(path):
        existing = PriorEntries()
        if path.exists():
            data = path.read_bytes()
            existing, valid = _parse_lines(path, data)
            _check_header(path, existing.header, want_header)
            if existing.damaged:  # rewritten without them; they are computed again below
                write_entries(path, existing)
            elif valid < len(data):  # drop a line cut short by a kill before appending
                with open(path, "r+b") as fh:
                    fh.truncate(valid)
        todo = _todo(existing, source, positions)
        if done is not None:
            todo = _todo(done, source, todo)
        bar = None
        if progress and todo:
            bar = tqdm(total=len(todo), desc=f"priors {path.name}", unit="sample")
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as fh:
            if existing.header is None:
                fh.write(json.dumps(want_header) + "\n")
            for start in range(0, len(todo), max(1, chunk_size)):
                chunk = todo[start:start + chunk_size]
                batch = source.fetch(chunk)
                groundings = provider.ground_batch(batch, split)
                if len(groundings) != len(batch):
                    raise RuntimeError(f"provider {provider.name!r} returned {len(groundings)} "
                                       f"groundings for {len(batch)} samples")
                lines = []
                for k, s, g in zip(chunk, batch, groundings):
                    if g.image_size is None:
                        g = replace(g, image_size=(int(s.image.shape[0]), int(s.image.shape[1])))
                    lines.append(entry_line({"id": source.ids[k], "check": source.checks[k],
                                             **g.to_dict()}))
                fh.write("\n".join(lines) + "\n")
                fh.flush()
                os.fsync(fh.fileno())
                if bar is not None:
                    bar.update(len(chunk))
        if bar is not None:
            bar.close()
    return ComputeResult(path, len(todo), len(positions) - len(todo))


# -- the "cache" provider ----------------------------------------------------------------------

class CachedPriors(PriorProvider):
    """Reads groundings from a cache file (and its shards) by sample id.

    :param path: the cache file written by ``l2l-priors`` / :func:`compute_priors`.
    :param strict: raise on samples that are missing or whose inputs changed (else: no prior).
    """

    name = "cache"

    def __init__(self, path: str | os.PathLike, strict: bool = True) -> None:
        self.path = Path(path)
        self.strict = bool(strict)
        self.entries = read_priors(self.path)

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "path": str(self.path.resolve()),
                "provider": (self.entries.header or {}).get("provider")}

    def lookup(self, ids: Sequence[str], checks: Sequence[str] | None = None) -> list[Grounding]:
        """Groundings by sample id; a clear error names missing or stale ids (when strict)."""
        missing = [sid for sid in ids if sid not in self.entries.groundings]
        stale = [] if checks is None else [
            sid for sid, c in zip(ids, checks)
            if sid in self.entries.checks and self.entries.checks[sid] not in ("", c)]
        if self.strict and (missing or stale):
            problems = []
            if missing:
                problems.append(f"{len(missing)} of {len(ids)} sample ids are missing "
                                f"(e.g. {missing[:5]})")
            if stale:
                problems.append(f"{len(stale)} entries were computed from other inputs "
                                f"(e.g. {stale[:5]})")
            raise MissingPriorError(f"prior cache {self.path}: {'; '.join(problems)}; recompute "
                                    "it with l2l-priors for this data set and split")
        bad = set(missing) | set(stale)
        return [Grounding(box=None, score=0.0, parsed=False, raw="cache:missing") if sid in bad
                else self.entries.groundings[sid] for sid in ids]

    def ground_batch(self, samples: Sequence[ReferringSample],
                     split: str | None = None) -> list[Grounding]:
        return self.lookup([s.sample_id for s in samples],
                           [input_check(s.image_id, s.phrase, s.box) for s in samples])
