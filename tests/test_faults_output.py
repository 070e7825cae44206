"""The output folder is checked before any work: a file, an unwritable folder and an empty
--resume are named at once."""

from __future__ import annotations

import builtins
import errno

from experiments.run import main as run_main


def test_out_that_is_a_file_is_named(tmp_path, capsys):
    out = tmp_path / "run"
    out.write_text("not a folder")
    assert run_main(["--config", "smoke", "--no-progress", "--out", str(out)]) == 2
    assert f"--out {out} is a file" in capsys.readouterr().err


def test_unwritable_out_is_named_before_any_work(tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    real_open = builtins.open

    def read_only(file, mode="r", *args, **kwargs):
        if str(file).startswith(str(out)) and any(c in mode for c in "wax+"):
            raise PermissionError(errno.EACCES, "Permission denied", str(file))
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", read_only)
    assert run_main(["--config", "smoke", "--no-progress", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"--out {out} cannot be written (Permission denied)" in err


def test_full_disk_when_writing_the_lock_is_named(tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    real_open = builtins.open

    class Full:
        def __init__(self, fh):
            self.fh = fh

        def write(self, data):
            raise OSError(errno.ENOSPC, "No space left on device")

        def __getattr__(self, name):
            return getattr(self.fh, name)

    def full(file, mode="r", *args, **kwargs):
        fh = real_open(file, mode, *args, **kwargs)
        return Full(fh) if str(file).endswith(".lock") else fh

    monkeypatch.setattr(builtins, "open", full)
    assert run_main(["--config", "smoke", "--no-progress", "--out", str(out)]) == 2
    assert "cannot be written (No space left on device)" in capsys.readouterr().err


def test_resume_names_a_corrupt_config_json(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "config.json").write_text("{half")
    assert run_main(["--config", "smoke", "--resume", "--out", str(out)]) == 2
    assert f"{out / 'config.json'} is corrupt" in capsys.readouterr().err


def test_resume_into_an_empty_out_says_it_starts_fresh(tmp_path, capsys, monkeypatch):
    from experiments import runner

    monkeypatch.setattr(runner.Runner, "run", lambda self: {})  # only the start matters here
    out = tmp_path / "new"
    assert run_main(["--config", "smoke", "--resume", "--no-progress", "--out", str(out)]) == 0
    assert f"{out} holds no run yet; starting a fresh one" in capsys.readouterr().err
