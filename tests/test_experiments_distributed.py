"""``torchrun --nproc_per_node=2 -m experiments.run``: DDP on the CPU with gloo keeps the segmenter
identical on both ranks while each rank steps its own shard of the unlabeled pool."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_two_process_gloo_run_keeps_ranks_in_sync(l2l_cache, tmp_path):
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "experiments.run", "--config", "smoke", "--out", str(out), "--cache-dir", str(l2l_cache),
           "--no-progress", "threads=1", "warmup_steps=4", "checkpoint_every=4", "loop_steps=16",
           "chunk_steps=16", "eval_every=0", "log_images=0", "agent=threshold", "eval_splits=[\"val\"]"]
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE", OMP_NUM_THREADS="1")
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]

    res = json.loads((out / "results.json").read_text())
    dist = res["distributed"]
    assert dist["world_size"] == 2 and dist["backend"] == "gloo"
    assert dist["in_sync"] and len(set(dist["param_digests"])) == 1 and len(dist["param_digests"]) == 2
    shards = dist["shards"]  # disjoint halves of the unlabeled pool
    assert [s["rank"] for s in shards] == [0, 1] and all(s["samples"] > 0 for s in shards)
    assert res["data"]["unlabeled_samples"] == shards[0]["samples"]
    assert set(res["metrics"]) == {"val"}

    from experiments.distributed import parameter_digest
    from segmenter import Segmenter

    final = Segmenter.load(out / "segmenter.pt")
    assert final.step == 4 + 16 // 8  # warm-up + one step per env update, gradients shared
    assert parameter_digest(final.model) == dist["param_digests"][0]
    init = Segmenter(final.config, text_encoder=final.text_encoder)
    assert parameter_digest(init.model) != dist["param_digests"][0]  # it did train
    # rank 0 writes results, logs and the final checkpoint; rank 1 only its own resume state
    assert (out / "checkpoint.rank1.pt").is_file() and not (out / "tb" / "rank1").exists()
    assert torch.load(out / "checkpoint.rank1.pt", weights_only=False)["stage"] == "done"
