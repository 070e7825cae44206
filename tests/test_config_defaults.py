"""Each default is written once: no two config dataclasses declare a default for the same key
(shared settings are inherited from one base: ``segmenter.shared.settings.Runtime``,
``l2l_env.config.SharedSettings``, ``l2l_env.warmup.WarmupSettings``)."""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil

import agents
import experiments
import l2l_env
import segmenter

NOT_RUN_SETTINGS = {"l2l_env.data.synthref.SynthRefConfig"}
"""What a generated data set is made of (its own ``image_size`` and ``seed``), not a setting of
a run's parts: reached through ``data_options``."""


def config_classes() -> list[type]:
    """Every dataclass named ``*Config`` or ``*Settings`` in the four packages."""
    found: dict[str, type] = {}
    for package in (segmenter, l2l_env, agents, experiments):
        for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            if info.name.endswith(("__main__", ".cli")):
                continue
            module = importlib.import_module(info.name)
            for obj in vars(module).values():
                if (isinstance(obj, type) and dataclasses.is_dataclass(obj)
                        and (obj.__name__.endswith(("Config", "Settings"))
                             or obj.__module__ == "segmenter.shared.settings")):
                    found[f"{obj.__module__}.{obj.__qualname__}"] = obj
    return [cls for name, cls in sorted(found.items()) if name not in NOT_RUN_SETTINGS]


def own_defaults(cls: type) -> set[str]:
    """The keys whose default ``cls`` itself writes (not inherited)."""
    own = set(cls.__dict__.get("__annotations__", {}))
    return {f.name for f in dataclasses.fields(cls) if f.name in own and (
        f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING)}


def test_each_default_is_written_in_one_config():
    classes = config_classes()
    names = {c.__name__ for c in classes}
    assert {"RunConfig", "EnvConfig", "SegmenterConfig", "L2LConfig"} <= names
    where: dict[str, list[str]] = {}
    for cls in classes:
        for key in own_defaults(cls):
            where.setdefault(key, []).append(f"{cls.__module__}.{cls.__qualname__}")
    twice = {key: owners for key, owners in where.items() if len(owners) > 1}
    assert not twice, f"defaults written in two configs: {twice}"


def test_the_check_finds_a_default_written_twice():
    @dataclasses.dataclass
    class A:
        seed: int = 0

    @dataclasses.dataclass
    class B(A):
        seed: int = 1

    assert own_defaults(B) == {"seed"} and own_defaults(A) == {"seed"}
