"""Every cache verifies what it reads: a corrupt entry is named with its path and rebuilt when it
can be, never read as valid."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from l2l_env.data import synthref
from l2l_env.priors.cache import CacheError, read_cache_file

OPTS = {"num_train": 40, "num_eval": 10}


def _split_files(root):
    cfg = synthref.make_config(**OPTS)
    return synthref.split_paths(cfg, "val", root)


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])


@pytest.mark.parametrize("damage", ["truncated npz", "flipped npz byte", "garbage json",
                                    "wrong-schema json"])
def test_a_corrupt_synthref_split_is_named_and_rebuilt(tmp_path, damage, capsys):
    first = synthref.load_arrays("val", tmp_path, **OPTS)
    npz, meta = _split_files(tmp_path)
    if damage == "truncated npz":
        _truncate(npz)
    elif damage == "flipped npz byte":
        data = bytearray(npz.read_bytes())
        data[len(data) // 2] ^= 0xFF
        npz.write_bytes(bytes(data))
    elif damage == "garbage json":
        meta.write_text("{not json")
    else:
        meta.write_text(json.dumps({"objects": 3}))
    bad = npz if "npz" in damage else meta
    again = synthref.load_arrays("val", tmp_path, **OPTS)
    assert re.search(f"warning: SynthRef cache file {re.escape(str(bad))} .* is corrupt",
                     capsys.readouterr().err)
    assert np.array_equal(again.images, first.images) and again.texts == first.texts
    synthref.read_split(synthref.make_config(**OPTS), "val", npz, meta)  # rewritten whole


def test_read_split_raises_corrupt_cache_naming_the_file(tmp_path):
    synthref.load_arrays("val", tmp_path, **OPTS)
    npz, meta = _split_files(tmp_path)
    _truncate(npz)
    with pytest.raises(synthref.CorruptCache, match=str(npz)):
        synthref.read_split(synthref.make_config(**OPTS), "val", npz, meta)


HEADER = json.dumps({"format": "l2l-priors/1", "provider": {"name": "x"}})


@pytest.mark.parametrize("line, message", [
    ('{"id": "1:1", "box": [NaN, 0, 4, 4]}', "must be finite"),
    ('{"id": "1:1", "box": [0, 0, -4, 4]}', "w, h >= 0"),
    ('{"id": "1:1", "box": [0, 0, 4, 4], "score": Infinity}', "'score' must be finite"),
    ('{"id": "1:1", "box": [0, 0, 4]}', "must be null or"),
])
def test_a_prior_cache_with_absurd_values_is_an_error_naming_file_and_line(tmp_path, line, message):
    path = tmp_path / "priors.jsonl"
    path.write_text(HEADER + "\n" + line + "\n")
    with pytest.raises(CacheError, match=rf"{path}, line 2: corrupt entry .*{message}"):
        read_cache_file(path)


def test_a_prior_cache_without_its_header_is_rejected(tmp_path):
    path = tmp_path / "priors.jsonl"
    path.write_text('{"id": "1:1", "box": [0, 0, 4, 4]}\n')
    with pytest.raises(CacheError, match=f"{path} has no header line"):
        read_cache_file(path)


def test_stale_temporaries_of_dead_writers_are_swept_and_live_ones_kept(tmp_path):
    import os
    import subprocess
    import sys

    from segmenter.shared.files import sweep_temporaries

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".train.npz.{dead.pid}.tmp"
    stale.write_bytes(b"half")
    stale_dir = tmp_path / f".agent-32.{dead.pid}.tmp"
    stale_dir.mkdir()
    live = tmp_path / f".train.json.{os.getpid()}.tmp"
    live.write_bytes(b"being written")
    other = tmp_path / ".notes.tmp"  # not one of ours: no pid in the name
    other.write_bytes(b"")
    assert sorted(sweep_temporaries(tmp_path)) == sorted([stale, stale_dir])
    assert live.exists() and other.exists() and not stale.exists() and not stale_dir.exists()


def test_a_corrupt_validation_image_is_named_before_any_work(tmp_path, capsys):
    from experiments.run import main as run_main
    from refer_fixtures import write_refer_fixture

    fixture = write_refer_fixture(tmp_path / "refer")
    val_image = next(r["image_id"] for r in fixture.refs if r["split"] == "val")
    fixture.image_path(val_image).write_bytes(b"not an image")
    argv = ["--config", "smoke", "--dataset", "refcoco", "--data-root", str(tmp_path / "refer"),
            "--out", str(tmp_path / "run"), "--cache-dir", str(tmp_path / "cache"), "--no-progress",
            "data_options={}", 'env.reward="hybrid"', "env.calibration_every=0", "env.probe_size=0",
            "--label-ratio", "0.5"]
    assert run_main(argv) == 2
    assert f"cannot read image {fixture.image_path(val_image)}" in capsys.readouterr().err
    assert not (tmp_path / "run" / "checkpoint.pt").exists()  # nothing ran
