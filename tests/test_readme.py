"""The README's "Use it" snippet runs as written, at a tiny size, and does what it says."""

from __future__ import annotations

import re
from pathlib import Path

from env_fixtures import tiny_env_kwargs

README = Path(__file__).resolve().parents[1] / "README.md"


def use_it_snippet() -> str:
    text = README.read_text()
    section = text[text.index("## Use it"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_use_it_snippet_runs_at_a_tiny_size(tmp_path, capsys):
    code = use_it_snippet()
    assert 'gym.make("l2l/PseudoLabel-v0", label_ratio=0.05)' in code
    assert "total_steps=2048" in code
    tiny = tiny_env_kwargs(tmp_path, label_ratio=0.2)
    tiny.pop("label_ratio")
    code = code.replace('label_ratio=0.05)', f'label_ratio=0.2, **{tiny!r})')
    code = code.replace("total_steps=2048", "total_steps=16")
    code = code.replace('agents.make("l2l")', 'agents.make("l2l", n_steps=8, minibatch_size=8, hidden=8)')
    scope: dict = {}
    exec(compile(code, str(README), "exec"), scope)
    env, info = scope["env"], scope["info"]
    assert env.unwrapped.segmenter.step > 0          # learning trained the segmenter ...
    assert info["global_step"] == 16                 # ... and the step went on where it stopped
    printed = capsys.readouterr().out.split()
    assert len(printed) == 2 and 0.0 <= float(printed[0]) <= 1.0
