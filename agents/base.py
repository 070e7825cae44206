"""The agent interface and the registry by name.

Every agent acts on the env's observation (:meth:`Agent.act`), learns from the env when it is a
learner (:meth:`Agent.learn`; a no-op for heuristics) and saves/loads itself. Agents are built by
name with :func:`make`; a new agent is one class decorated with :func:`register`::

    @register("mine")
    class Mine(Agent):
        def act(self, obs, deterministic=True): ...

A name ending in ``":"`` registers a *family*: ``register("sb3:", variant_arg="algo")`` makes
``make("sb3:ppo")`` call ``cls(algo="ppo")``.

Saved agents are directories holding ``agent.json`` (``{"name": ..., ...}``) plus whatever the
agent needs; :func:`load` reads the name and dispatches to the registered class.

What an agent can run on is declared on its class (:attr:`Agent.action_spaces`, or
:meth:`Agent.supported_action_spaces` for a family whose members differ), so a run refuses an
agent that cannot act in its env, or options it does not take, from the config alone
(:meth:`Agent.check_action_space`, :meth:`Agent.check_options`), before any data is loaded.
"""

from __future__ import annotations

import abc
import dataclasses
import inspect
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol, TypeVar

import numpy as np
from gymnasium import spaces

from agents.obs import Obs
from l2l_env.labels import action_form

MANIFEST = "agent.json"
"""The file in a saved agent's directory that names the agent."""

Callback = Callable[["Agent", dict[str, Any]], "bool | None"]
"""``callback(agent, record)`` after each learning update; returning ``False`` stops learning."""


class Stepper(Protocol):
    """An agent driven one env step at a time by a caller that steps the env itself (a run's
    loop): ``env_answer = env.step(stepper.action()); stepper.observe(*env_answer)``."""

    def action(self) -> np.ndarray:
        """The env's action for its current observation."""

    def observe(self, obs: Obs, reward: float, terminated: bool, truncated: bool,
                info: dict[str, Any]) -> None:
        """The env's answer to the last :meth:`action` (an ended episode resets the env)."""


class GreedyStepper:
    """The :class:`Stepper` of an agent that does not learn: its deterministic action."""

    def __init__(self, agent: Agent, env: Any, obs: Obs) -> None:
        self.agent, self.env, self.obs = agent, env, obs

    def action(self) -> np.ndarray:
        return self.agent.act(self.obs, deterministic=True)

    def observe(self, obs: Obs, reward: float, terminated: bool, truncated: bool,
                info: dict[str, Any]) -> None:
        self.obs = obs
        if terminated or truncated:
            self.obs, _ = self.env.reset()


class Agent(abc.ABC):
    """What every agent offers.

    :cvar name: the registry name (set by :func:`register`; instances of families override it).
    :cvar is_learner: whether :meth:`learn` does anything.
    :cvar preferred_label_source: the env ``label_source`` this agent is meant to run with
        (``"prior"`` for the prior baseline), or ``None`` for the env's default. Experiments read it.
    :cvar needs_truth: an analysis-only oracle that reads the env's ground-truth observation
        (``oracle_obs=True``); experiments turn it on for such agents and flag their results.
    :cvar action_spaces: the action-space types the agent acts in; the env's ``construct`` form is
        ``MultiDiscrete``, its ``select`` form ``MultiBinary``
        (:func:`l2l_env.labels.action_space`).
    """

    name: ClassVar[str] = ""
    is_learner: ClassVar[bool] = False
    preferred_label_source: ClassVar[str | None] = None
    needs_truth: ClassVar[bool] = False
    action_spaces: ClassVar[tuple[type[spaces.Space], ...]] = (spaces.MultiDiscrete,
                                                              spaces.MultiBinary)

    @abc.abstractmethod
    def act(self, obs: Obs, deterministic: bool = True) -> np.ndarray:
        """The env's action for ``obs``, int8: ``(G*G,)`` for a single observation, ``(B, G*G)``
        for a batched one (leading batch dim, as from a vector env); choice codes under the
        ``construct`` form, 0/1 under ``select``."""

    def learn(self, env: Any, total_steps: int, callback: Callback | None = None,
              writer: Any | None = None) -> dict[str, Any]:
        """Learn from ``env`` for ``total_steps`` env steps; returns a summary dict.

        :param callback: called after each learning update (see :data:`Callback`).
        :param writer: a ``torch.utils.tensorboard.SummaryWriter`` for the agent's own records.
        Heuristics do not learn: the default returns ``{}`` without touching ``env``.
        """
        return {}

    # ------------------------------------------------------------------ what a run needs
    @classmethod
    def option_names(cls) -> set[str]:
        """The keyword options :func:`make` accepts for this class (a run passes its ``seed``,
        ``device`` and the env's ``action_form`` to agents that list them)."""
        params = inspect.signature(cls.__init__).parameters
        return {n for n, p in params.items() if n != "self"
                and p.kind not in (inspect.Parameter.VAR_KEYWORD, inspect.Parameter.VAR_POSITIONAL)}

    @classmethod
    def supported_action_spaces(cls, name: str) -> tuple[type[spaces.Space], ...]:
        """The action-space types agent ``name`` (a registry name of this class) acts in:
        :attr:`action_spaces` unless a family's members differ."""
        return cls.action_spaces

    @classmethod
    def check_action_space(cls, name: str, options: dict[str, Any],
                           action_space: spaces.Space) -> None:
        """Raise ``ValueError`` when agent ``name`` with ``options`` cannot act in
        ``action_space``: a space type outside :meth:`supported_action_spaces`, or an
        ``action_form`` option other than the space's form."""
        supported = cls.supported_action_spaces(name)
        if not isinstance(action_space, supported):
            raise ValueError(f"agent {name!r} acts in {space_names(supported)} action spaces only, "
                             f"not in the env's {_describe(action_space)}")
        form, env_form = options.get("action_form"), action_form(action_space)
        if form is not None and env_form is not None and form != env_form:
            raise ValueError(f"agent {name!r} was given action_form={form!r}, but the env's action "
                             f"form is {env_form!r}: drop the option or set env action={form!r}")

    @classmethod
    def check_options(cls, name: str, options: dict[str, Any]) -> None:
        """Raise ``TypeError``/``ValueError`` naming the option at fault when agent ``name`` does
        not take ``options``. The default builds the agent (cheap when it builds its networks on
        first use); agents override it to check without building."""
        make(name, **options)

    @classmethod
    def run_defaults(cls, name: str, options: dict[str, Any]) -> dict[str, Any]:
        """Options a run sets unless ``options`` gives them (``name``: the registry name, e.g.
        ``sb3:ppo``); e.g. a rollout length that fits a run's checkpoint chunks."""
        return {}

    @classmethod
    def rollout_length(cls, name: str, options: dict[str, Any]) -> int:
        """Env steps per learning update with these options: a run ends its checkpoint chunks on
        multiples of it so that a resumed run takes whole updates (1 for non-learners)."""
        return 1

    @property
    def savable(self) -> bool:
        """Whether :meth:`save` has something to write now (a learner before its first update
        may not)."""
        return True

    def continue_from(self, env: Any, obs: Obs, counters: dict[str, int]) -> None:
        """Make the next :meth:`learn` go on from ``env``'s current state ``obs`` (instead of
        resetting it), with the rollout ``counters`` of :meth:`counters` (a resumed run hands back
        the saved ones). A no-op for agents that carry no state between ``learn`` calls."""

    def stepper(self, env: Any, obs: Obs, counters: dict[str, int],
                writer: Any | None = None) -> Stepper | None:
        """This agent as a :class:`Stepper` on ``env``, from its current state ``obs`` (a
        learner goes on with ``counters`` as after :meth:`continue_from`, learning as in
        :meth:`learn`). ``None`` for a learner that steps the env only inside its own
        :meth:`learn` (a caller then uses :meth:`continue_from` and :meth:`learn`); the default:
        ``None`` for learners, greedy acting otherwise."""
        return None if self.is_learner else GreedyStepper(self, env, obs)

    def counters(self) -> dict[str, int] | None:
        """``{"env_steps", "updates"}`` of the learning so far, or ``None`` for agents that keep
        none (a run then counts the env steps itself)."""
        return None

    @abc.abstractmethod
    def save(self, path: str | Path) -> Path:
        """Write the agent to directory ``path`` (created); returns it."""

    @classmethod
    @abc.abstractmethod
    def load(cls, path: str | Path) -> Agent:
        """The agent saved in directory ``path`` by :meth:`save`."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


@dataclass(frozen=True)
class _Entry:
    cls: type[Agent]
    variant_arg: str | None = None


class _Registry:
    """Name -> agent class; family names end with ``":"``."""

    def __init__(self) -> None:
        self._entries: dict[str, _Entry] = {}

    def add(self, name: str, cls: type[Agent], variant_arg: str | None) -> None:
        if not name or name.strip() != name:
            raise ValueError(f"agent name must be a non-empty string without spaces, got {name!r}")
        family = name.endswith(":")
        if family and variant_arg is None:
            raise ValueError(f"family {name!r} needs variant_arg= (the constructor argument that "
                             "receives the part after the colon)")
        if not family and ":" in name:
            raise ValueError(f"agent name {name!r}: a ':' is only allowed at the end (a family)")
        old = self._entries.get(name)
        if old is not None and old.cls is not cls:
            raise ValueError(f"agent name {name!r} is already registered to {old.cls.__qualname__}")
        self._entries[name] = _Entry(cls, variant_arg)

    def resolve(self, name: str) -> tuple[_Entry, str | None]:
        if name in self._entries and not name.endswith(":"):
            return self._entries[name], None
        if ":" in name:
            prefix, variant = name.split(":", 1)
            entry = self._entries.get(prefix + ":")
            if entry is not None and variant:
                return entry, variant
        raise KeyError(f"unknown agent {name!r}; known agents: {', '.join(self.names())}")

    def names(self) -> list[str]:
        return sorted(n + "<variant>" if n.endswith(":") else n for n in self._entries)


_REGISTRY = _Registry()

A = TypeVar("A", bound=type[Agent])


def register(name: str, *, variant_arg: str | None = None) -> Callable[[A], A]:
    """Class decorator: make ``cls`` available as ``make(name)``.

    :param name: the agent's name; ending in ``":"`` registers a family (``"sb3:"``).
    :param variant_arg: for a family, the constructor keyword that receives the variant
        (``make("sb3:ppo")`` -> ``cls(algo="ppo")``).
    """

    def deco(cls: A) -> A:
        if not (isinstance(cls, type) and issubclass(cls, Agent)):
            raise TypeError(f"register({name!r}) expects an Agent subclass, got {cls!r}")
        _REGISTRY.add(name, cls, variant_arg)
        if not name.endswith(":"):
            cls.name = name
        return cls

    return deco


def make(name: str, **kwargs: Any) -> Agent:
    """Build the agent registered as ``name`` with ``kwargs``.

    Raises ``KeyError`` listing the known names when ``name`` is unknown.
    """
    entry, variant = _REGISTRY.resolve(name)
    if variant is not None:
        assert entry.variant_arg is not None
        if entry.variant_arg in kwargs:
            raise TypeError(f"make({name!r}): {entry.variant_arg!r} is given by the name, "
                            "do not pass it as a keyword too")
        kwargs[entry.variant_arg] = variant
    return entry.cls(**kwargs)


def space_names(types: tuple[type[spaces.Space], ...]) -> str:
    """``"MultiDiscrete/MultiBinary"``: the names of some space types, for messages."""
    return "/".join(t.__name__ for t in types)


def _describe(space: spaces.Space) -> str:
    """``"MultiDiscrete (env action='construct')"``: a space by its type and form, for messages
    (its repr lists every cell)."""
    form = action_form(space)
    return type(space).__name__ + (f" (env action={form!r})" if form is not None else "")


def available() -> list[str]:
    """Registered agent names, sorted (families shown as ``"sb3:<variant>"``)."""
    return _REGISTRY.names()


def agent_class(name: str) -> type[Agent]:
    """The class registered for ``name`` (a family member resolves to the family's class)."""
    return _REGISTRY.resolve(name)[0].cls


def config_from(config_cls: type, config: Any, options: dict[str, Any], who: str) -> Any:
    """An instance of the dataclass ``config_cls``: ``config`` itself, or built from the keyword
    ``options`` (unknown names are a ``TypeError`` that lists the known ones); not both."""
    if config is not None and options:
        raise TypeError(f"{who}: pass a {config_cls.__name__} or keywords, not both")
    if config is not None:
        if not isinstance(config, config_cls):
            raise TypeError(f"{who}: expected a {config_cls.__name__}, got {config!r}")
        return config
    fields = {f.name for f in dataclasses.fields(config_cls)}
    unknown = sorted(set(options) - fields)
    if unknown:
        raise TypeError(f"{who}: unknown parameter(s) {unknown}; expected some of {sorted(fields)}")
    return config_cls(**options)


def write_manifest(path: str | Path, name: str, **fields: Any) -> Path:
    """Create directory ``path`` and write ``agent.json`` with ``name`` and ``fields``."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    (path / MANIFEST).write_text(json.dumps({"name": name, **fields}, indent=2, sort_keys=True))
    return path


def read_manifest(path: str | Path) -> dict[str, Any]:
    """The ``agent.json`` of a saved agent; raises ``FileNotFoundError``/``ValueError`` naming it."""
    f = Path(path) / MANIFEST
    if not f.is_file():
        raise FileNotFoundError(f"{f}: no saved agent here (expected {MANIFEST} written by Agent.save)")
    try:
        data = json.loads(f.read_text())
    except (OSError, ValueError) as err:
        raise ValueError(f"{f}: unreadable ({err}); expected the JSON written by Agent.save"
                         ) from None
    if not isinstance(data, dict) or not isinstance(data.get("name"), str):
        raise ValueError(f"{f}: expected an object with a string 'name', got {data!r}")
    return data


def load(path: str | Path) -> Agent:
    """Load any saved agent: reads its name from ``agent.json`` and calls that class's ``load``.
    Raises ``FileNotFoundError`` (no saved agent) or ``ValueError`` naming the folder when its
    files are garbage or cut short."""
    cls = agent_class(read_manifest(path)["name"])
    try:
        return cls.load(path)
    except (FileNotFoundError, ValueError):
        raise
    except Exception as err:  # a file cut short or overwritten: whatever its reader raises
        reason = (str(err).strip().splitlines() or [""])[0][:200]  # torch's run over lines
        raise ValueError(f"saved agent {path} is corrupt ({type(err).__name__}: {reason}); its "
                         f"files {sorted(p.name for p in Path(path).iterdir())} were not written "
                         "whole by Agent.save") from None
