"""Shared fixtures: one SynthRef/prior cache for the whole session, tiny sizes everywhere.

Thread settings live here, never at import time of a test module (an import-time
``torch.set_num_threads`` changes every test collected after it, so results depended on which
files were collected together): every test gets back the thread count it started with, and a
module that wants one thread says ``pytestmark = pytest.mark.usefixtures("one_thread")``.
"""

from __future__ import annotations

import os

# Spinning OpenMP threads slow 2-thread torch badly on a shared 2-core machine; must precede torch.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(min(2, torch.get_num_threads()))

TINY_SEGMENTER = {"stem_width": 8, "widths": (8, 16, 16, 16), "depths": (1, 1, 1, 1),
                  "decoder_width": 16, "text_dim": 16}
"""The architecture of the tiny segmenter every test uses (``SegmenterConfig`` keyword arguments;
tests add their own training settings). Use the ``tiny_segmenter`` fixture in test modules."""

SLOW_TIMEOUT_S = 900
"""The per-test limit of tests marked ``slow`` (the default, ``timeout`` in pyproject, is 300 s)."""


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.get_closest_marker("slow") and not item.get_closest_marker("timeout"):
            item.add_marker(pytest.mark.timeout(SLOW_TIMEOUT_S))


@pytest.fixture(autouse=True)
def _restore_torch_threads():
    """Whatever a test (or ``l2l-run`` inside it) sets, the next test starts with the same count."""
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a module: tiny tensors gain nothing from threads, threads stall badly
    on a busy machine, and a process forked from one that ran torch with several threads (a
    gymnasium ``AsyncVectorEnv``) can dead-lock. Module scope, so module-scoped fixtures run
    under it too."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def tiny_segmenter() -> dict:
    """A fresh copy of ``TINY_SEGMENTER`` (safe to modify)."""
    return dict(TINY_SEGMENTER)


@pytest.fixture(scope="session")
def text_encoder():
    """The frozen ``minilm`` phrase encoder, loaded once per session."""
    from segmenter import TextEncoder

    return TextEncoder("minilm")


@pytest.fixture(scope="session")
def l2l_cache(tmp_path_factory):
    """A cache root shared by the session's tests (SynthRef and priors are generated once)."""
    return tmp_path_factory.mktemp("l2l_cache")
