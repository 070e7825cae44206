"""The JSONL prior cache: round trip, resume after interruption, corrupt files, shards, merge."""

from __future__ import annotations

import json

import pytest
from priors_fixtures import CountingProvider, make_samples

from l2l_env.priors import (CacheError, CachedPriors, Grounding, MissingPriorError,
                            SimulatedGrounder, compute_priors, make_provider, merge_shards,
                            read_priors)
from l2l_env.priors.cache import (parse_shard, read_cache_file, shard_files, shard_from_env,
                                  shard_indices, shard_path)


@pytest.fixture(scope="module")
def samples():
    return make_samples(120, seed=1)


def test_grounding_round_trip():
    gs = [Grounding(box=(1.5, 2.0, 3.25, 4.0), points=((1.0, 2.0),), score=0.25, raw="x",
                    image_size=(30, 40)),
          Grounding(box=None, score=0.0, parsed=False, raw="garbage"),
          Grounding(box=(0.0, 0.0, 1.0, 1.0))]
    for g in gs:
        assert Grounding.from_dict(json.loads(json.dumps(g.to_dict()))) == g
    with pytest.raises(ValueError, match="'box'"):
        Grounding.from_dict({"box": [1, 2, 3]})


def test_scores_are_kept_and_caches_without_scores_still_load(tmp_path, samples):
    out = tmp_path / "p.jsonl"
    sim = SimulatedGrounder("kosmos-2")
    compute_priors(sim, samples[:20], out, split="val")
    lines = out.read_text().splitlines()
    scores = [json.loads(line)["score"] for line in lines[1:]]
    assert scores == [g.score for g in sim.ground_batch(samples[:20], "val")]
    assert len(set(scores)) > 5  # per grounding, not a constant
    old = tmp_path / "old.jsonl"  # as written before scores and checksums were recorded
    old.write_text(lines[0] + "\n" + "\n".join(
        json.dumps({k: v for k, v in json.loads(line).items() if k not in ("score", "sum")})
        for line in lines[1:]) + "\n")
    loaded = CachedPriors(old).ground_batch(samples[:20])
    assert all(g.score == 1.0 for g in loaded)
    assert [g.box for g in loaded] == [g.box for g in read_priors(out).groundings.values()]


def test_compute_then_read_back_by_sample_id(tmp_path, samples):
    out = tmp_path / "p.jsonl"
    sim = SimulatedGrounder("florence-2-large")
    result = compute_priors(sim, samples, out, split="val", chunk_size=16)
    assert (result.computed, result.reused) == (len(samples), 0)
    entries = read_priors(out)
    assert entries.header["provider"]["preset"]["name"] == "florence-2-large"
    expected = sim.ground_batch(samples, "val")
    for s, g in zip(samples, expected):
        got = entries.groundings[s.sample_id]
        assert got.box == g.box and got.score == g.score and got.image_size == s.image.shape[:2]


def test_resume_after_interruption_computes_only_missing(tmp_path, samples):
    out = tmp_path / "p.jsonl"
    first = CountingProvider(SimulatedGrounder(), fail_after_calls=3)
    with pytest.raises(KeyboardInterrupt):
        compute_priors(first, samples, out, chunk_size=10)
    assert first.calls == 3 and len(read_cache_file(out).groundings) == 30
    # a kill in the middle of a line leaves a cut-short last line: tolerated
    with open(out, "a") as fh:
        fh.write('{"id": "999:999", "check": "ab", "box": [1, 2')
    second = CountingProvider(SimulatedGrounder())
    result = compute_priors(second, samples, out, chunk_size=10)
    assert sorted(second.seen) == sorted(s.sample_id for s in samples[30:])
    assert (result.computed, result.reused) == (90, 30)
    entries = read_cache_file(out)  # the file is whole again: every line parses
    assert set(entries.groundings) == {s.sample_id for s in samples}
    third = CountingProvider(SimulatedGrounder())
    assert compute_priors(third, samples, out).computed == 0 and third.calls == 0


def test_changed_inputs_are_recomputed(tmp_path, samples):
    import dataclasses

    out = tmp_path / "p.jsonl"
    compute_priors(SimulatedGrounder(), samples, out)
    changed = [dataclasses.replace(s, phrase="another phrase") if i < 5 else s
               for i, s in enumerate(samples)]
    counter = CountingProvider(SimulatedGrounder())
    compute_priors(counter, changed, out)
    assert sorted(counter.seen) == sorted(s.sample_id for s in samples[:5])


def test_corrupt_line_is_an_error_naming_file_and_line(tmp_path, samples):
    out = tmp_path / "p.jsonl"
    compute_priors(SimulatedGrounder(), samples[:10], out)
    lines = out.read_text().splitlines()
    lines[4] = lines[4][:20] + "#" + lines[4][21:]
    out.write_text("\n".join(lines) + "\n")
    with pytest.raises(CacheError, match=r"p\.jsonl, line 5"):
        read_priors(out)
    with pytest.raises(CacheError, match="line 5"):
        compute_priors(SimulatedGrounder(), samples[:10], out)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_priors(tmp_path / "missing.jsonl")


def test_other_provider_config_is_refused(tmp_path, samples):
    out = tmp_path / "p.jsonl"
    compute_priors(SimulatedGrounder("kosmos-2"), samples[:5], out)
    with pytest.raises(CacheError, match="computed with provider"):
        compute_priors(SimulatedGrounder("perfect"), samples[:5], out)


def test_shards_partition_every_sample_exactly_once(tmp_path, samples):
    for n in (1, 3, 7):
        parts = [shard_indices(len(samples), (i, n)) for i in range(n)]
        flat = sorted(k for p in parts for k in p)
        assert flat == list(range(len(samples)))
    out = tmp_path / "p.jsonl"
    counters = []
    for i in range(3):
        c = CountingProvider(SimulatedGrounder())
        compute_priors(c, samples, out, shard=(i, 3), chunk_size=8)
        counters.append(c)
    seen = [sid for c in counters for sid in c.seen]
    assert sorted(seen) == sorted(s.sample_id for s in samples)  # each exactly once
    assert shard_files(out) == [shard_path(out, (i, 3)) for i in range(3)]
    assert not out.exists()
    entries = read_priors(out)  # reading merges the shards
    assert set(entries.groundings) == {s.sample_id for s in samples}
    merge_shards(out, remove=True)
    assert out.exists() and shard_files(out) == []
    assert read_priors(out).groundings == entries.groundings


def test_shard_specs_and_torchrun_environment():
    assert parse_shard("2/4") == (2, 4)
    for bad in ("4/4", "a/b", "1", "-1/2"):
        with pytest.raises(ValueError, match="shard"):
            parse_shard(bad)
    assert shard_from_env({"RANK": "1", "WORLD_SIZE": "4"}) == (1, 4)
    assert shard_from_env({"RANK": "0", "WORLD_SIZE": "1"}) is None
    assert shard_from_env({}) is None


def test_cache_provider_reads_by_id_and_errors_on_missing(tmp_path, samples):
    out = tmp_path / "p.jsonl"
    sim = SimulatedGrounder("kosmos-2")
    compute_priors(sim, samples[:50], out)
    cached = make_provider("cache", path=out)
    assert isinstance(cached, CachedPriors)
    assert [g.box for g in cached.ground_batch(samples[:50])] == \
        [g.box for g in sim.ground_batch(samples[:50])]
    with pytest.raises(MissingPriorError, match=r"p\.jsonl: 10 of 60 sample ids are missing"):
        cached.ground_batch(samples[:60])
    lenient = CachedPriors(out, strict=False)
    assert all(g.no_prior for g in lenient.ground_batch(samples[50:60]))
