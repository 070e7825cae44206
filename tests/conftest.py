"""Shared fixtures: one SynthRef/prior cache for the whole session, tiny sizes everywhere."""

from __future__ import annotations

import os

# Spinning OpenMP threads slow 2-thread torch badly on a shared 2-core machine; must precede torch.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(scope="session")
def l2l_cache(tmp_path_factory):
    """A cache root shared by the session's tests (SynthRef and priors are generated once)."""
    root = tmp_path_factory.mktemp("l2l_cache")
    os.environ.setdefault("L2L_TEST_CACHE", str(root))
    return root
