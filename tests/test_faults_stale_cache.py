"""Nothing stale: every cache is keyed by what it was built from and carries a checksum verified
before use; other inputs or changed bytes (even of the same size) are named in one line and the
cache is rebuilt."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch

from l2l_env.data import load_table
from l2l_env.rows import image_cache_path, image_store
from segmenter.shared.disk_cache import CacheFile

pytestmark = pytest.mark.usefixtures("one_thread")


def _flip(path, at=None):
    """Change one byte of ``path`` in place (same size)."""
    data = bytearray(path.read_bytes())
    k = len(data) // 2 if at is None else at
    data[k] ^= 0xFF
    path.write_bytes(bytes(data))


def test_a_cache_file_names_other_inputs_changed_bytes_and_a_missing_checksum(tmp_path, capsys):
    cache = CacheFile(tmp_path / "c.bin", "inputs-a", "test cache")
    assert not cache.usable()  # missing: nothing to say
    cache.write(b"0123456789")
    assert cache.usable() and capsys.readouterr().err == ""
    assert not CacheFile(cache.path, "inputs-b", "test cache").usable()
    assert f"test cache {cache.path} was built from other inputs" in capsys.readouterr().err
    _flip(cache.path)
    assert not cache.usable()
    assert "does not match its checksum" in capsys.readouterr().err
    cache.meta_path.unlink()
    assert not cache.usable()
    err = capsys.readouterr().err
    assert "has no checksum" in err and err.count("\n") == 1 and "rebuilding it" in err


@pytest.fixture
def refer_root(tmp_path):
    from refer_fixtures import write_refer_fixture

    root = tmp_path / "refer"
    write_refer_fixture(root)
    return root


def test_the_warm_up_cache_is_not_reused_when_the_data_under_the_same_root_changed(
        refer_root, tiny_segmenter, capsys):
    from l2l_env.warmup import read_warm_start, warmup_cache, write_warm_start
    from segmenter import Segmenter, SegmenterConfig

    seg = Segmenter(SegmenterConfig.from_dict({**tiny_segmenter, "use_text": False}))
    table = load_table("refcoco", "train", data_root=refer_root)
    folder = refer_root / "warm"
    write_warm_start(seg, warmup_cache(folder, "key", table))
    assert read_warm_start(seg, warmup_cache(folder, "key", table))  # same data: reused
    instances = refer_root / "refcoco" / "instances.json"
    data = json.loads(instances.read_text())
    data["annotations"][0]["bbox"] = [float(v) + 1.0 for v in data["annotations"][0]["bbox"]]
    instances.write_text(json.dumps(data))  # other data, same paths and key
    changed = load_table("refcoco", "train", data_root=refer_root)
    assert changed.fingerprint() != table.fingerprint()
    capsys.readouterr()
    assert not read_warm_start(seg, warmup_cache(folder, "key", changed))
    assert "warm-up cache" in (err := capsys.readouterr().err) and "other inputs" in err


def test_the_table_fingerprint_follows_image_files(refer_root):
    table = load_table("refcoco", "train", data_root=refer_root)
    before = table.fingerprint()
    path = table.load_image.existing_path(table.image_ids[0])
    path.write_bytes(path.read_bytes() + b"\0")  # same records, another file
    assert load_table("refcoco", "train", data_root=refer_root).fingerprint() != before


def test_an_image_cache_with_flipped_bytes_of_the_same_size_is_rebuilt(refer_root, tmp_path,
                                                                       capsys):
    table = load_table("refcoco", "train", data_root=refer_root)
    ids = table.image_ids
    first = image_store(table.load_image, "refcoco", "train", ids, 32, cache_root=tmp_path)
    want = first.read(np.arange(len(ids)))
    path = image_cache_path(tmp_path, "refcoco", "train", 32, ids, table.load_image.fingerprint())
    _flip(path, at=path.stat().st_size - 7)  # a pixel, not the header
    size = path.stat().st_size
    capsys.readouterr()
    again = image_store(table.load_image, "refcoco", "train", ids, 32, cache_root=tmp_path)
    assert re.search(rf"image cache {re.escape(str(path))} does not match its checksum",
                     capsys.readouterr().err)
    assert path.stat().st_size == size and np.array_equal(again.read(np.arange(len(ids))), want)


@pytest.mark.parametrize("damage", [b"\x80\x04garbage that unpickles to nothing",
                                    bytes(range(256)) * 12])
def test_a_garbage_text_feature_cache_is_named_and_rebuilt(tmp_path, tiny_segmenter, capsys,
                                                           damage):
    from l2l_env.text_store import phrase_features
    from segmenter import Segmenter, SegmenterConfig

    phrases = ["the red ball", "the blue box on the left"]
    seg = Segmenter(SegmenterConfig.from_dict(tiny_segmenter))
    assert phrase_features(seg, phrases, tmp_path, batch=8) is None  # built and written
    want = {p: seg.text_encoder.cached_features()[p].clone() for p in phrases}
    file = next((tmp_path / "text").glob("features-*.pt"))
    assert phrase_features(seg, phrases, tmp_path, batch=8) == file  # read back
    file.write_bytes(damage)
    capsys.readouterr()
    seg.text_encoder.clear_cache()
    assert phrase_features(seg, phrases, tmp_path, batch=8) is None  # rebuilt, no traceback
    assert f"text feature cache {file}" in capsys.readouterr().err
    assert all(torch.equal(seg.text_encoder.cached_features()[p], want[p]) for p in phrases)
    assert phrase_features(seg, phrases, tmp_path, batch=8) == file  # whole again


def test_a_prior_entry_whose_bytes_changed_is_named_and_computed_again(tmp_path, l2l_cache,
                                                                       capsys):
    from l2l_env.data import RefSplit
    from l2l_env.priors import load_priors
    from l2l_env.priors.table import priors_path

    table = load_table("synthref", "val", data_root=l2l_cache, num_train=40, num_eval=10)
    first = load_priors("synthref", "val", RefSplit(table), cache_dir=tmp_path)
    path = priors_path("synthref", "val", "simulated", tmp_path)
    lines = path.read_text().splitlines()
    entry = json.loads(lines[1])
    box = entry["box"]
    assert box is not None
    lines[1] = lines[1].replace(json.dumps(box[0]), json.dumps(box[0] + 5.0), 1)
    path.write_text("\n".join(lines) + "\n")  # still valid JSON, a wrong box
    capsys.readouterr()
    again = load_priors("synthref", "val", RefSplit(table), cache_dir=tmp_path)
    assert f"prior cache {path}: 1 entries do not match their checksum" in capsys.readouterr().err
    assert np.array_equal(again.boxes, first.boxes, equal_nan=True)
    load_priors("synthref", "val", RefSplit(table), cache_dir=tmp_path)
    assert capsys.readouterr().err == ""  # rewritten whole: said once
