"""load_priors: every sentence computed once, cached by provider config, read back fast."""

from __future__ import annotations

import numpy as np
import pytest
from priors_fixtures import CountingProvider, make_table

import l2l_env.priors.table as table_mod
from l2l_env.data.types import ObjectInfo, RefRecord, RefSplit, RefTable
from l2l_env.priors import (Grounding, MissingPriorError, PriorProvider, PriorTable,
                            SimulatedGrounder, compute_priors, load_priors, priors_path,
                            soft_proposals)


@pytest.fixture(scope="module")
def split():
    return RefSplit(make_table(60, seed=4, sentences=3, split="testA"), "per_ref")


def _ids(split):
    return [f"{r.ref_id}:{sid}" for r in split.table.refs for sid, _ in r.sentences]


def test_every_sentence_is_grounded_and_cached_under_the_provider_key(tmp_path, split):
    table = load_priors("handmade", "testA", split, preset="kosmos-2", cache_dir=tmp_path)
    assert isinstance(table, PriorTable) and len(table) == 180 and len(split) == 60
    assert table.ids == _ids(split)
    path = priors_path("handmade", "testA", "simulated", tmp_path, preset="kosmos-2")
    assert table.path == path and path.exists()
    assert path.parent == tmp_path / "priors" / "handmade" / "testA"
    assert path.name.startswith("simulated-")
    sim = SimulatedGrounder("kosmos-2")
    samples = list(RefSplit(split.table, "per_sentence"))
    for s, g in zip(samples, sim.ground_batch(samples, "testA")):
        assert table[s.sample_id].box == g.box and table.get(s.sample_id).raw == g.raw
    # another preset, another file; same preset spelled differently, same file
    assert priors_path("handmade", "testA", "simulated", tmp_path, preset="perfect") != path
    assert priors_path("handmade", "testA", "simulated", tmp_path, preset="kosmos-2", seed=0,
                       device="cpu") == path


def test_second_load_reads_the_cache_without_a_provider(tmp_path, split, monkeypatch):
    first = load_priors("handmade", "testA", split, cache_dir=tmp_path)

    def boom(*args, **kwargs):
        raise AssertionError("the provider must not be built for a cached split")

    monkeypatch.setattr(table_mod, "make_provider", boom)
    again = load_priors("handmade", "testA", split, cache_dir=tmp_path)
    assert [again[i] for i in again.ids] == [first[i] for i in first.ids]


def test_partial_cache_is_completed(tmp_path, split, monkeypatch):
    path = priors_path("handmade", "testA", "simulated", tmp_path)
    samples = list(RefSplit(split.table, "per_sentence"))
    compute_priors(SimulatedGrounder(), samples[:100], path, split="testA")
    counter = CountingProvider(SimulatedGrounder())
    monkeypatch.setattr(table_mod, "make_provider", lambda name, **kw: counter)
    table = load_priors("handmade", "testA", split, cache_dir=tmp_path)
    assert sorted(counter.seen) == sorted(s.sample_id for s in samples[100:]) and len(table) == 180


def test_table_proposals_and_no_prior_flags(tmp_path, split):
    table = load_priors("handmade", "testA", split, preset="kosmos-2", cache_dir=tmp_path)
    ids = table.ids
    maps = table.proposals(ids, 16, 20)
    assert maps.shape == (180, 16, 20) and maps.dtype == np.float32
    np.testing.assert_allclose(maps, soft_proposals([table[i] for i in ids], 16, 20), atol=1e-6)
    flags = table.no_prior(ids)
    assert flags.dtype == bool and flags.tolist() == [table[i].no_prior for i in ids]
    assert flags.any() and not flags.all()
    assert np.all(maps[flags] == 0.5)
    gauss = table.proposals(ids, 16, 20, kind="gaussian")
    assert gauss.shape == (180, 16, 20)
    with pytest.raises(MissingPriorError, match="'nope:1'"):
        table.get("nope:1")
    with pytest.raises(MissingPriorError, match="'nope:2'"):
        table.proposals(["nope:2"], 4, 4)


def test_cache_provider_reads_a_given_file(tmp_path, split):
    full = load_priors("handmade", "testA", split, preset="florence-2-large", cache_dir=tmp_path)
    again = load_priors("handmade", "testA", split, "cache", path=full.path)
    assert [again[i] for i in again.ids] == [full[i] for i in full.ids]
    other = RefSplit(make_table(70, seed=4, sentences=3, split="testA"), "per_sentence")
    with pytest.raises(MissingPriorError, match="30 of 210 sample ids are missing"):
        load_priors("handmade", "testA", other, "cache", path=full.path)
    with pytest.raises(TypeError, match="RefSplit"):
        load_priors("handmade", "testA", [1, 2], cache_dir=tmp_path)


class _Constant(PriorProvider):
    name = "simulated"

    def config(self):
        return SimulatedGrounder().config()

    def ground_batch(self, samples, split=None):
        return [Grounding(box=(1.0, 2.0, 3.0, 4.0), score=0.5) for _ in samples]


def test_cached_load_of_11k_entries_reads_the_file_and_computes_nothing(tmp_path, monkeypatch):
    # (How fast this load is belongs in benchmarks/, not in a test that a loaded machine fails.)
    obj = ObjectInfo(box=(1.0, 2.0, 3.0, 4.0), category="circle")
    image = np.zeros((8, 8, 3), np.uint8)
    refs = [RefRecord(ref_id=r, image_id=r, box=obj.box, sentences=((2 * r, "a"), (2 * r + 1, "b")),
                      mask=np.zeros((8, 8), bool), objects=(obj,), referent=0) for r in range(5500)]
    big = RefSplit(RefTable("handmade", "val", refs, lambda i: image), "per_sentence")
    path = priors_path("handmade", "val", "simulated", tmp_path)
    compute_priors(_Constant(), big, path, chunk_size=4096)

    def no_compute(*args, **kwargs):
        raise AssertionError("load_priors recomputed priors that are all in the cache")

    monkeypatch.setattr(table_mod, "compute_priors", no_compute)
    for _ in range(2):
        table = load_priors("handmade", "val", big, cache_dir=tmp_path)
        assert len(table) == 11000 and table.path == path
        # _Constant's boxes, not the real simulated grounder's: the file was read
        assert {tuple(table[sid].box) for sid in table.ids} == {(1.0, 2.0, 3.0, 4.0)}


def test_mllm_and_sam_are_imported_only_on_use():
    import subprocess
    import sys

    code = ("import sys, l2l_env.priors as p; p.make_provider('simulated'); "
            "print(sorted(m for m in ('l2l_env.priors.mllm', 'l2l_env.priors.sam', 'torch') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
