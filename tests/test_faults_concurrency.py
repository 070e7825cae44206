"""One run per output folder: a second run into a busy --out is refused at once; a lock left by a
killed run never blocks the next one."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from experiments.lock import LOCK_NAME, OutputBusy, OutputLock
from experiments.run import main as run_main


def test_a_second_run_into_a_busy_out_is_refused(tmp_path, capsys):
    out = tmp_path / "run"
    with OutputLock(out):
        assert run_main(["--config", "smoke", "--no-progress", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"{out} is in use by another l2l-run (pid {os.getpid()})" in err
    assert not (out / "checkpoint.pt").exists() and not (out / "config.json").exists()


def test_the_lock_is_exclusive_and_released():
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        with OutputLock(folder):
            with pytest.raises(OutputBusy, match="in use"):
                OutputLock(folder).acquire()
        OutputLock(folder).acquire().release()  # free again


def test_a_killed_holder_leaves_no_stale_lock(tmp_path):
    code = ("import sys, time; from experiments.lock import OutputLock; "
            "lock = OutputLock(sys.argv[1]).acquire(); print('held', flush=True); time.sleep(60)")
    proc = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        with pytest.raises(OutputBusy, match=f"pid {proc.pid}"):
            OutputLock(tmp_path).acquire()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert (tmp_path / LOCK_NAME).read_text().strip() == str(proc.pid)  # the file stays ...
    deadline = time.monotonic() + 10
    while True:  # ... but its lock went with the process
        try:
            OutputLock(tmp_path).acquire().release()
            break
        except OutputBusy:
            assert time.monotonic() < deadline
            time.sleep(0.1)
