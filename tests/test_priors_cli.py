"""``l2l-priors`` in process: compute (plain, sharded, torchrun, resumed), merge, report."""

from __future__ import annotations

import json

import pytest

import l2l_env.priors.table as table_mod
from l2l_env.data import load_split
from l2l_env.priors import load_priors, priors_path, read_priors
from l2l_env.priors.cache import shard_files
from l2l_env.priors.cli import main

TINY = ["-o", "num_eval=60", "-o", "num_train=40"]


@pytest.fixture()
def base(l2l_cache):
    return ["--dataset", "synthref", "--data-root", str(l2l_cache), *TINY]


def test_compute_is_the_default_command_and_resumes(tmp_path, base, capsys):
    out = tmp_path / "p.jsonl"
    assert main([*base, "--split", "val", "--split", "testB", "--out", str(out)]) == 0
    entries = read_priors(out)
    assert len(entries.groundings) == 120  # both splits in one file, ids unique across splits
    assert "60 computed, 0 already done" in capsys.readouterr().out
    assert main(["compute", *base, "--split", "val", "--split", "testB", "--out", str(out)]) == 0
    assert capsys.readouterr().out.count("0 computed, 60 already done") == 2


def test_shards_then_merge_equal_one_run(tmp_path, base, monkeypatch):
    whole, sharded = tmp_path / "whole.jsonl", tmp_path / "sharded.jsonl"
    assert main([*base, "--split", "val", "--out", str(whole)]) == 0
    assert main([*base, "--split", "val", "--out", str(sharded), "--shard", "0/2"]) == 0
    monkeypatch.setenv("WORLD_SIZE", "2")  # as torchrun launches rank 1
    monkeypatch.setenv("RANK", "1")
    assert main([*base, "--split", "val", "--out", str(sharded)]) == 0
    monkeypatch.delenv("WORLD_SIZE")
    parts = [read_priors(p).groundings for p in shard_files(sharded)]
    assert [len(p) for p in parts] == [30, 30] and not set(parts[0]) & set(parts[1])
    assert main(["merge", str(sharded), "--remove-shards"]) == 0
    assert shard_files(sharded) == []
    assert read_priors(sharded).groundings == read_priors(whole).groundings


def test_without_out_it_fills_the_load_priors_cache(tmp_path, base, l2l_cache, monkeypatch):
    assert main([*base, "--split", "testA", "--preset", "kosmos-2",
                 "--cache-dir", str(tmp_path)]) == 0
    assert priors_path("synthref", "testA", "simulated", tmp_path, preset="kosmos-2").exists()
    monkeypatch.setattr(table_mod, "make_provider", lambda *a, **k: pytest.fail("recomputed"))
    samples = load_split("synthref", "testA", data_root=l2l_cache, num_eval=60, num_train=40)
    table = load_priors("synthref", "testA", samples, preset="kosmos-2", cache_dir=tmp_path)
    assert len(table) == 60


def test_report_json_keys_and_ranges(tmp_path, base, capsys):
    assert main(["report", *base, "--split", "val", "--split", "testA",
                 "--cache-dir", str(tmp_path), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert list(report) == ["val", "testA"]
    for row in report.values():
        assert set(row) == {"acc@0.5", "proposal_mIoU"}
        assert all(0.0 <= v <= 1.0 for v in row.values())
    assert main(["report", *base, "--split", "val", "--cache-dir", str(tmp_path),
                 "--preset", "perfect"]) == 0
    text = capsys.readouterr().out
    assert "val" in text and "100.00" in text


def test_errors_are_reported_not_raised(tmp_path, base, capsys):
    assert main([*base, "--provider", "mllm", "--out", str(tmp_path / "x.jsonl")]) == 2
    assert "needs --model" in capsys.readouterr().err
    assert main(["report", *base, "--provider", "cache", "--path", str(tmp_path / "none.jsonl"),
                 "--split", "val"]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main([*base, "--shard", "3/2", "--out", str(tmp_path / "y.jsonl")]) == 2
    assert "0 <= i < n" in capsys.readouterr().err
