"""Nothing mixed, nothing lost: --overwrite removes every output of the previous run (one list
of a run's outputs), a finished run whose results.json was lost or garbled is evaluated again
from its segmenter.pt on --resume, a garbage saved agent is named, and a full disk names the
path and says that --resume continues."""

from __future__ import annotations

import errno
import json
import shutil

import numpy as np
import pytest

from experiments import checkpoint, outputs
from experiments.run import main as run_main
from segmenter.shared import files

pytestmark = pytest.mark.usefixtures("one_thread")
SMOKE = ["--config", "smoke", "--no-progress", "threads=1", "log_images=0"]


@pytest.fixture(scope="module")
def finished(tmp_path_factory, l2l_cache):
    out = tmp_path_factory.mktemp("finished") / "run"
    assert run_main([*SMOKE, "--cache-dir", str(l2l_cache), "--out", str(out)]) == 0
    return out


def _results(out):
    return json.loads((out / outputs.RESULTS).read_text())


@pytest.mark.parametrize("damage", ["deleted", "garbage"])
def test_a_finished_run_without_its_results_is_evaluated_again(finished, tmp_path, l2l_cache,
                                                               damage, capsys):
    out = tmp_path / "run"
    shutil.copytree(finished, out)
    if damage == "deleted":
        (out / outputs.RESULTS).unlink()
    else:
        (out / outputs.RESULTS).write_text("{garbage")
    capsys.readouterr()
    assert run_main([*SMOKE, "--cache-dir", str(l2l_cache), "--out", str(out), "--resume"]) == 0
    assert "evaluating its segmenter.pt again" in capsys.readouterr().err
    again, reference = _results(out), _results(finished)
    assert again["metrics"] == reference["metrics"]
    assert again["pseudo_labels"] == reference["pseudo_labels"]


def test_a_finished_run_without_results_nor_segmenter_is_named(finished, tmp_path, l2l_cache,
                                                                capsys):
    out = tmp_path / "run"
    shutil.copytree(finished, out)
    (out / outputs.RESULTS).unlink()
    (out / outputs.SEGMENTER).write_bytes(b"cut")
    assert run_main([*SMOKE, "--cache-dir", str(l2l_cache), "--out", str(out), "--resume"]) == 2
    err = capsys.readouterr().err
    assert f"{out / outputs.SEGMENTER} cannot be read" in err and "--overwrite" in err


def test_overwrite_removes_every_output_of_the_previous_run(finished, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(finished, out)
    (out / outputs.QUALITY_PLOT).write_bytes(b"old picture")
    (out / outputs.SAMPLES).write_bytes(b"old picture")
    (out / "notes.txt").write_text("the user's own")
    assert {p.name for p in outputs.run_outputs(out)} >= {outputs.RESULTS, outputs.SEGMENTER,
                                                          outputs.QUALITY_PLOT, outputs.SAMPLES}
    from experiments.run import prepare_out

    prepare_out(out, resume=False, overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == [".lock", "notes.txt"]


def test_every_file_a_run_writes_is_in_the_list_of_outputs(finished):
    listed = set(outputs.run_outputs(finished))
    for path in finished.rglob("*"):
        if path.name != ".lock":
            assert path in listed or any(p in path.parents for p in listed), path


@pytest.mark.parametrize("damage", ["garbage weights", "garbage manifest", "missing folder"])
def test_a_garbage_saved_agent_is_named(tmp_path, damage):
    import agents
    from agents.l2l import ObsLayout
    from fake_env import FakePseudoLabelEnv

    env = FakePseudoLabelEnv()
    obs, _ = env.reset(seed=0)
    agent = agents.make("l2l", n_steps=8, minibatch_size=8, n_epochs=1, hidden=8, dilations=[1])
    agent.build(ObsLayout.from_obs({k: np.asarray(v)[None] for k, v in obs.items()}))
    folder = tmp_path / "agent-8"
    folder.mkdir()
    agent.save(folder)
    assert isinstance(agents.load(folder), type(agent))
    if damage == "garbage weights":
        for f in folder.glob("*.pt"):
            f.write_bytes(bytes(range(200)) * 3)
    elif damage == "garbage manifest":
        (folder / "agent.json").write_text("{half")
    else:
        shutil.rmtree(folder)
    with pytest.raises((ValueError, FileNotFoundError), match=str(folder)):
        agents.load(folder)


def test_a_full_disk_names_the_path_and_keeps_the_last_checkpoint(tmp_path, l2l_cache,
                                                                   monkeypatch, capsys):
    out = tmp_path / "run"
    real = checkpoint.torch.save
    calls = []

    def fills_up(obj, fh, *args, **kwargs):
        if isinstance(obj, dict) and "stage" in obj:  # a run checkpoint (not a feature cache)
            calls.append(1)
        if len(calls) == 2:  # the second checkpoint: torch's zip writer finds the disk full
            raise RuntimeError("[enforce fail at inline_container.cc:603] . unexpected pos 64 "
                               "vs 0")
        return real(obj, fh, *args, **kwargs)

    monkeypatch.setattr(checkpoint.torch, "save", fills_up)
    assert run_main([*SMOKE, "--cache-dir", str(l2l_cache), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert f"no space left on the disk of {out / 'checkpoint.pt'}" in err and "--resume" in err
    assert "Traceback" not in err
    monkeypatch.setattr(checkpoint.torch, "save", real)
    assert checkpoint.load_checkpoint(out / "checkpoint.pt")["stage"] == "warmup"  # intact
    with pytest.raises(files.DiskFull, match="No space left on device: .*x.bin"):
        with files.atomic_file(tmp_path / "x.bin") as fh:
            fh.write(b"a")
            raise OSError(errno.ENOSPC, "No space left on device")
    assert not list(tmp_path.glob(".x.bin.*"))
