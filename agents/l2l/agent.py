"""The ``l2l`` agent: the reinforced label constructor of the paper behind the common interface.

``learn(env, total_steps)`` runs the self-evolving loop: the env trains its segmenter on the
constructed labels every ``update_interval`` steps while the constructor is updated by
:mod:`agents.l2l.ppo` every ``n_steps`` steps (from the env's per-cell reward on its held-out
labeled calibration steps by default). ``agent.history`` holds one record per update
(``mean_reward``, ``coverage``, ``pl_precision``, losses), so a caller can show the reward rising.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import torch

from agents.base import Agent, Callback, config_from, read_manifest, register, write_manifest
from agents.l2l import ppo
from agents.l2l.policy import ObsLayout, SelectorNet
from agents.obs import Obs, as_batch, check_dict_space, unbatch

WEIGHTS = "selector.pt"


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


@register("l2l")
class L2LAgent(Agent):
    """Fully convolutional per-cell label constructor (or selector, ``action_form="select"``).

    :param config: an :class:`~agents.l2l.ppo.L2LConfig`; or pass its fields as keywords.

    The network is built from the first observation space or observation it sees (grid-size
    independent). ``act(obs, deterministic=True)`` takes each cell's most probable choice;
    ``deterministic=False`` samples. :meth:`probabilities` gives the per-cell choice probabilities.
    """

    is_learner = True

    def __init__(self, config: ppo.L2LConfig | None = None, **kwargs: Any) -> None:
        self.config = config = config_from(ppo.L2LConfig, config, kwargs, "agent 'l2l'")
        self.device = _device(config.device)
        self.net: SelectorNet | None = None
        self.optimizer: torch.optim.Optimizer | None = None
        self.history: list[dict[str, Any]] = []
        self.gen = torch.Generator(device=self.device).manual_seed(config.seed)
        self.rng = np.random.default_rng(config.seed)
        self.rollout = ppo.RolloutState()
        """What carries over between ``learn`` calls (the env position, replay window); the
        runner points it at a resumed env."""

    # ------------------------------------------------------------------ run protocol
    @classmethod
    def option_names(cls) -> set[str]:
        return {f.name for f in dataclasses.fields(ppo.L2LConfig)} | {"config"}

    @classmethod
    def check_options(cls, name: str, options: dict[str, Any]) -> None:
        """The options make a valid :class:`~agents.l2l.ppo.L2LConfig` (no network is built)."""
        rest = dict(options)
        config_from(ppo.L2LConfig, rest.pop("config", None), rest, f"agent {name!r}")

    @classmethod
    def rollout_length(cls, name: str, options: dict[str, Any]) -> int:
        return int(options.get("n_steps", ppo.L2LConfig.n_steps))

    @property
    def savable(self) -> bool:
        return self.net is not None

    def continue_from(self, env: Any, obs: Obs, counters: dict[str, int]) -> None:
        self.rollout.env = env
        self.rollout.obs = as_batch(obs)[0]
        self.rollout.reset_next = np.zeros(1, dtype=bool)
        self.rollout.env_steps = int(counters.get("env_steps", 0))
        self.rollout.updates = int(counters.get("updates", 0))

    def counters(self) -> dict[str, int]:
        return {"env_steps": int(self.rollout.env_steps), "updates": int(self.rollout.updates)}

    @property
    def last_obs(self) -> dict[str, np.ndarray] | None:
        """The observation ``learn`` stopped at (batched, leading dim = number of envs): the
        env's current state, where a caller may go on acting."""
        return self.rollout.obs

    # ------------------------------------------------------------------ network
    def build(self, layout: ObsLayout) -> SelectorNet:
        """Create the network (seeded, without touching torch's global generator) and optimiser."""
        c = self.config
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(c.seed)
            net = SelectorNet(layout, hidden=c.hidden, dilations=c.dilations, cond_hidden=c.cond_hidden,
                              coord=c.coord, init_probs=c.init_probs)
        self.net = net.to(self.device)
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=c.learning_rate, eps=1e-5)
        return self.net

    def _net_for(self, batch: dict[str, np.ndarray]) -> SelectorNet:
        return self.net if self.net is not None else self.build(ObsLayout.from_obs(batch))

    # ------------------------------------------------------------------ acting
    def logits(self, obs: Obs) -> np.ndarray:
        """Per-cell choice logits, ``(G*G, K)`` or ``(B, G*G, K)`` float32."""
        batch, single = as_batch(obs)
        net = self._net_for(batch)
        with torch.no_grad():
            logits = net(*net.layout.tensors(batch, self.device))[0]
        return unbatch(logits.cpu().numpy().astype(np.float32), single)

    def probabilities(self, obs: Obs) -> np.ndarray:
        """Per-cell choice probabilities, ``(G*G, K)`` or ``(B, G*G, K)`` float32 (under
        ``select``, column 1 is the keep probability)."""
        logits = torch.as_tensor(self.logits(obs))
        return torch.softmax(logits, dim=-1).numpy().astype(np.float32)

    def act(self, obs: Obs, deterministic: bool = True) -> np.ndarray:
        batch, single = as_batch(obs)
        logits = torch.as_tensor(self.logits(batch))
        if deterministic:
            choice = logits.argmax(dim=-1)
        else:
            choice = ppo.sample_choices(logits.to(self.device), self.gen).cpu()
        return unbatch(choice.numpy().astype(np.int8), single)

    # ------------------------------------------------------------------ learning
    def learner(self, env: Any, callback: Callback | None = None,
                writer: Any | None = None) -> ppo.Learner:
        """A :class:`~agents.l2l.ppo.Learner` of this agent on ``env`` (a gymnasium env or vector
        env), going on from the env's current state when it is the env of the last one.

        :param writer: optional ``torch.utils.tensorboard.SummaryWriter``.
        """
        space = getattr(env, "single_observation_space", None) or env.observation_space
        check_dict_space(space, "L2LAgent.learn")
        action_space = getattr(env, "single_action_space", None) or env.action_space
        k = int(np.max(action_space.nvec)) if hasattr(action_space, "nvec") else 2
        if k != self.config.n_choices:
            raise ValueError(f"L2LAgent(action_form={self.config.action_form!r}) has "
                             f"{self.config.n_choices} choices per cell, but the env's action space "
                             f"{action_space} has {k}: make the agent with "
                             f"action_form={'construct' if k == 4 else 'select'!r}")
        if self.net is None:
            self.build(ObsLayout.from_space(space))
        assert self.net is not None and self.optimizer is not None
        self.net.train()
        cb = None if callback is None else (lambda record: callback(self, record))
        return ppo.Learner(self.net, self.optimizer, env, self.config, self.rollout, self.gen,
                           self.rng, self.history, cb, writer)

    def learn(self, env: Any, total_steps: int, callback: Callback | None = None,
              writer: Any | None = None) -> dict[str, Any]:
        """Train on ``env`` (a gymnasium env or vector env) for ``total_steps`` env steps.

        Calling again on the same env continues from its current state.
        :param writer: optional ``torch.utils.tensorboard.SummaryWriter``.
        """
        if total_steps < 1:
            raise ValueError(f"total_steps must be >= 1, got {total_steps}")
        return ppo.learn(self.learner(env, callback, writer), total_steps)

    def stepper(self, env: Any, obs: Obs, counters: dict[str, int],
                writer: Any | None = None) -> ppo.Learner:
        """The learner, going on from ``env``'s state ``obs`` (:meth:`continue_from`)."""
        self.continue_from(env, obs, counters)
        return self.learner(env, writer=writer)

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | Path) -> Path:
        if self.net is None:
            raise ValueError("L2LAgent.save: the selector has no network yet (call learn or act first)")
        path = write_manifest(path, self.name, config=dataclasses.asdict(self.config),
                              layout=dataclasses.asdict(self.net.layout), history=self.history)
        assert self.optimizer is not None
        replay = self.rollout
        torch.save({"net": self.net.state_dict(), "optimizer": self.optimizer.state_dict(),
                    "gen": self.gen.get_state(), "rng": self.rng.bit_generator.state,
                    "replay_obs": (None if replay.replay_obs is None else
                                   {k: torch.from_numpy(v) for k, v in replay.replay_obs.items()}),
                    "replay_scores": (None if replay.replay_scores is None
                                      else torch.from_numpy(replay.replay_scores))}, path / WEIGHTS)
        return path

    @classmethod
    def load(cls, path: str | Path, device: str | None = None) -> L2LAgent:
        data = read_manifest(path)
        if data["name"] != cls.name:
            raise ValueError(f"{Path(path)}: saved agent is {data['name']!r}, not {cls.name!r}")
        cfg = dict(data["config"])
        if device is not None:
            cfg["device"] = device
        agent = cls(ppo.L2LConfig(**cfg))
        layout = ObsLayout(**{k: tuple(v) if isinstance(v, list) else v
                              for k, v in data["layout"].items()})
        agent.build(layout)
        blob = torch.load(Path(path) / WEIGHTS, map_location=agent.device, weights_only=True)
        assert agent.net is not None and agent.optimizer is not None
        agent.net.load_state_dict(blob["net"])
        agent.optimizer.load_state_dict(blob["optimizer"])
        agent.gen.set_state(blob["gen"])
        agent.rng.bit_generator.state = blob["rng"]
        if blob.get("replay_obs") is not None:
            agent.rollout.replay_obs = {k: v.numpy() for k, v in blob["replay_obs"].items()}
            agent.rollout.replay_scores = blob["replay_scores"].numpy()
        agent.history = list(data.get("history", []))
        return agent
