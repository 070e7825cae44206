"""Atomic writers: a write that fails half-way (the disk fills while the data is written, or the
final rename fails) leaves the previous file complete and loadable, and no temporary file behind.

Covered: ``l2l_env.data.cache.atomic_write_bytes`` (SynthRef, splits, prior caches, results.json),
``experiments.checkpoint.save_checkpoint`` (run checkpoints), ``save_agent_dir`` (agent folders)
and ``Segmenter.save``.
"""

from __future__ import annotations

import errno
import io
import json
import os

import pytest
import torch

from experiments.checkpoint import load_checkpoint, save_agent_dir, save_checkpoint
from l2l_env.data.cache import atomic_write_bytes

pytestmark = pytest.mark.usefixtures("one_thread")

DISK_FULL = OSError(errno.ENOSPC, "No space left on device")

def _leftovers(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".tmp" in p.name)


def _fail_replace(*args, **kwargs):
    raise DISK_FULL


class _HalfWriter:
    """A file object that takes the first half of what is written, then fails like a full disk."""

    def __init__(self, fh, total: int):
        self._fh, self._left = fh, max(1, total // 2)

    def write(self, data) -> int:
        data = bytes(data)
        if len(data) > self._left:
            self._fh.write(data[:self._left])
            self._left = 0
            raise DISK_FULL
        self._left -= len(data)
        return self._fh.write(data)

    def __getattr__(self, name):
        return getattr(self._fh, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._fh.close()


def _half_torch_save(real_save):
    """``torch.save`` that writes half the serialised bytes to its target and then fails."""

    def save(obj, f, *args, **kwargs):
        buf = io.BytesIO()
        real_save(obj, buf, *args, **kwargs)
        data = buf.getvalue()
        if hasattr(f, "write"):
            f.write(data[:len(data) // 2])
        else:
            with open(f, "wb") as fh:
                fh.write(data[:len(data) // 2])
        raise DISK_FULL

    return save


# ----------------------------------------------------------------------------- atomic_write_bytes

def _fail_atomic_write_bytes(monkeypatch, how: str, data: bytes, folder) -> None:
    """Make the next write of ``data`` into ``folder`` fail (whatever file it goes to first)."""
    import builtins

    if how == "replace":
        monkeypatch.setattr(os, "replace", _fail_replace)
    else:
        real_open = builtins.open

        def half_open(file, mode="r", *args, **kwargs):
            fh = real_open(file, mode, *args, **kwargs)
            into = isinstance(file, (str, os.PathLike)) and os.path.dirname(file) == str(folder)
            return _HalfWriter(fh, len(data)) if "w" in mode and into else fh

        monkeypatch.setattr(builtins, "open", half_open)


@pytest.mark.parametrize("how", ["write", "replace"])
def test_atomic_write_bytes_keeps_the_previous_file(tmp_path, monkeypatch, how):
    path = tmp_path / "results.json"
    atomic_write_bytes(path, json.dumps({"run": 1}).encode())
    new = json.dumps({"run": 2, "pad": "x" * 10_000}).encode()
    with monkeypatch.context() as m:
        _fail_atomic_write_bytes(m, how, new, tmp_path)
        with pytest.raises(OSError, match="No space"):
            atomic_write_bytes(path, new)
    assert json.loads(path.read_text()) == {"run": 1}
    atomic_write_bytes(path, new)  # and the next write goes through
    assert json.loads(path.read_bytes()) == json.loads(new)
    assert _leftovers(tmp_path) == []


# ----------------------------------------------------------------------------- run checkpoints

def _state(n: int) -> dict:
    weights = torch.arange(20_000, dtype=torch.float32) + n
    return {"stage": "loop", "loop_done": n, "weights": weights}


def _fail_torch_write(monkeypatch, how: str) -> None:
    """Make the next torch checkpoint write fail: mid-write (``write``) or at the rename."""
    if how == "replace":
        monkeypatch.setattr(os, "replace", _fail_replace)
    else:
        monkeypatch.setattr(torch, "save", _half_torch_save(torch.save))


@pytest.mark.parametrize("how", ["write", "replace"])
def test_failed_checkpoint_write_keeps_the_previous_checkpoint_loadable(tmp_path, monkeypatch, how):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, _state(16))
    with monkeypatch.context() as m:
        _fail_torch_write(m, how)
        with pytest.raises(OSError, match="No space"):
            save_checkpoint(path, _state(32))
    ckpt = load_checkpoint(path)
    assert ckpt["loop_done"] == 16 and torch.equal(ckpt["weights"], _state(16)["weights"])
    assert _leftovers(tmp_path) == []


def test_a_half_written_checkpoint_is_a_clear_error_not_a_crash(tmp_path):
    """What the rename protects against: reading a truncated file names it as corrupt."""
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, _state(16))
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])
    with pytest.raises(ValueError, match="corrupt"):
        load_checkpoint(path)


# ----------------------------------------------------------------------------- agent folders

class _Agent:
    def __init__(self, tag: str, fail: bool = False):
        self.tag, self.fail = tag, fail

    def save(self, path):
        os.makedirs(path, exist_ok=True)
        with open(os.path.join(path, "agent.json"), "w") as fh:
            fh.write(json.dumps({"tag": self.tag}))
        if self.fail:
            raise DISK_FULL  # after part of the folder was written
        with open(os.path.join(path, "weights.bin"), "wb") as fh:
            fh.write(b"w" * 100)


def _agent_files(folder) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_failed_agent_save_keeps_the_previous_agent_folder(tmp_path):
    final = tmp_path / "agent"
    save_agent_dir(_Agent("old"), final)
    before = _agent_files(final)
    with pytest.raises(OSError, match="No space"):
        save_agent_dir(_Agent("new", fail=True), final)
    assert _agent_files(final) == before and json.loads(before["agent.json"]) == {"tag": "old"}
    assert _leftovers(tmp_path) == []


# ----------------------------------------------------------------------------- Segmenter.save

@pytest.fixture
def segmenter(text_encoder, tiny_segmenter):
    from segmenter import Segmenter, SegmenterConfig

    return Segmenter(SegmenterConfig(image_size=32, **tiny_segmenter), text_encoder=text_encoder)


@pytest.mark.parametrize("how", ["write", "replace"])
def test_failed_segmenter_save_keeps_the_previous_checkpoint_loadable(segmenter, text_encoder,
                                                                      tmp_path, monkeypatch, how):
    from segmenter import Segmenter

    path = tmp_path / "seg.pt"
    segmenter.save(path)
    saved = {k: v.clone() for k, v in segmenter.model.state_dict().items()}
    with torch.no_grad():
        for p in segmenter.model.parameters():
            p.add_(1.0)
    with monkeypatch.context() as m:
        _fail_torch_write(m, how)
        with pytest.raises(OSError, match="No space"):
            segmenter.save(path)
    loaded = Segmenter.load(path, text_encoder=text_encoder)
    for k, v in loaded.model.state_dict().items():
        assert torch.equal(v, saved[k]), k

    assert _leftovers(tmp_path) == []
