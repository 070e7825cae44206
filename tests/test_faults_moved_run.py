"""A run folder moved (or copied) while interrupted resumes from anywhere, and finishes with the
results of an uninterrupted run."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]


def l2l_run(args, cwd, cache, kill_at: int | None = None) -> int:
    env = dict(os.environ, L2L_CACHE_DIR=str(cache), PYTHONPATH=str(ROOT), OMP_WAIT_POLICY="PASSIVE")
    env.pop("L2L_RUN_KILL_AT_STEP", None)
    if kill_at:
        env["L2L_RUN_KILL_AT_STEP"] = str(kill_at)
    return subprocess.call([sys.executable, "-m", "experiments.run", "--config", "smoke",
                            "--no-progress", "threads=1", *args], cwd=cwd, env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def test_an_interrupted_run_resumes_after_its_folder_moved(tmp_path):
    cache = tmp_path / "cache"
    (tmp_path / "a").mkdir()
    assert l2l_run(["--out", "ref"], tmp_path / "a", cache) == 0
    reference = json.loads((tmp_path / "a" / "ref" / "results.json").read_text())
    assert l2l_run(["--out", "rel/run"], tmp_path / "a", cache, kill_at=40) != 0  # killed mid-loop
    src = tmp_path / "a" / "rel" / "run"
    assert (src / "checkpoint.pt").is_file()
    dst = tmp_path / "elsewhere" / "run"
    dst.parent.mkdir()
    shutil.copytree(src, dst)
    shutil.rmtree(src)  # moved: nothing of the original may be read
    assert l2l_run(["--resume", "--out", str(dst)], "/", cache) == 0
    resumed = json.loads((dst / "results.json").read_text())
    assert resumed["metrics"] == reference["metrics"]
    assert resumed["pseudo_labels"] == reference["pseudo_labels"]
