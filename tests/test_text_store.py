"""The packed text feature store: every phrase encoded once in fixed batches, read back exactly;
the stored encoder gives the features of the store whatever else it has seen; a cut file is
named and rebuilt; a run with more phrases than the text cache reads them from a store."""

from __future__ import annotations

import pytest
import torch

from l2l_env.text_store import (StoredTextEncoder, TextFeatureStore, text_feature_store,
                                text_store_path, write_text_store)
from segmenter.text import TextEncoder

pytestmark = pytest.mark.usefixtures("one_thread")
PHRASES = sorted({f"the {c} {s} number {k}" for c in ("red", "blue", "green")
                  for s in ("ball", "box") for k in range(7)})


@pytest.fixture(scope="module")
def encoder():
    return StoredTextEncoder("minilm", frozen=True, max_tokens=12, cache_size=16)


def test_store_holds_the_features_of_an_up_front_encoding(encoder, tmp_path):
    store = write_text_store(tmp_path / "t.f32", encoder, PHRASES)
    reference = TextEncoder("minilm", frozen=True, max_tokens=12, cache_size=1000)
    for start in range(0, len(PHRASES), 16):  # the batches the store was written in
        reference(PHRASES[start:start + 16])
    want = reference.cached_features()
    got = store.read(PHRASES[::-1] + ["not a stored phrase"])
    assert sorted(got) == PHRASES
    assert all(torch.equal(got[p], want[p]) for p in PHRASES)


def test_stored_encoder_reads_the_store_before_encoding(encoder, tmp_path):
    store = write_text_store(tmp_path / "t.f32", encoder, PHRASES)
    encoder.clear_cache()
    encoder(["an unrelated phrase seen first"])
    encoder.attach(store)
    batch = [PHRASES[5], PHRASES[30], PHRASES[5], "a phrase the store lacks"]
    tokens, mask = encoder(batch)
    stored = store.read(batch)
    for i, p in enumerate(batch[:3]):
        n = int(mask[i].sum())
        assert torch.equal(tokens[i, :n], stored[p]) and not mask[i, n:].any()
    assert mask[3].any()  # encoded as before
    encoder.attach(None)


def test_store_is_reused_and_a_cut_file_rebuilt(encoder, tmp_path, capsys):
    path = text_store_path(tmp_path, encoder.name, encoder.max_tokens, PHRASES)
    first = text_feature_store(encoder, PHRASES, tmp_path)
    assert first.path == path
    stamp = path.stat().st_mtime_ns
    assert text_feature_store(encoder, PHRASES, tmp_path).path == path
    assert path.stat().st_mtime_ns == stamp
    data = path.read_bytes()
    path.write_bytes(data[:-7])
    with pytest.raises(ValueError, match="cut short"):
        TextFeatureStore(path, PHRASES)
    text_feature_store(encoder, PHRASES, tmp_path)
    assert "rebuilding" in capsys.readouterr().err and path.read_bytes() == data
    trainable = TextEncoder("minilm", frozen=False, max_tokens=12)
    with pytest.raises(ValueError, match="frozen"):
        text_feature_store(trainable, PHRASES, tmp_path)


def test_a_run_with_more_phrases_than_the_cache_reads_a_store(tmp_path, monkeypatch):
    from experiments import config as C
    from experiments.runner import Runner

    monkeypatch.setenv("L2L_CACHE_DIR", str(tmp_path / "cache"))
    cfg = C.load_config("smoke", {"out": str(tmp_path / "run"), "progress": False},
                        ["segmenter.text_cache_size=64", "threads=1"])
    runner = Runner(cfg, C.resolved_dict(cfg, C.validate(cfg)))
    runner.prepare()
    parts = runner.parts
    assert len(parts.phrases) > 64
    assert parts.data_info["text_features"].startswith("read per batch from")
    encoder = parts.segmenter.text_encoder
    assert isinstance(encoder, StoredTextEncoder) and len(encoder.store) == len(parts.phrases)
    env = parts.env
    obs, _ = env.reset(seed=0)
    env.step(env.action_space.sample())
    assert encoder.cache_size_now() <= 64 + 40  # bounded by the cache (plus one batch)
