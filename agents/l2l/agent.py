"""The ``l2l`` agent: the reinforced selector of the paper behind the common agent interface.

``learn(env, total_steps)`` runs the self-evolving loop: the env trains its segmenter on the
selections every ``update_interval`` steps while the selector is updated on-policy by
:mod:`agents.l2l.ppo` every ``n_steps`` steps. ``agent.history`` holds one record per update
(``mean_reward``, ``coverage``, ``pl_precision``, losses), so a caller can show the reward rising.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import torch

from agents.base import Agent, Callback, read_manifest, register, write_manifest
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
    """Fully convolutional per-cell selector trained by per-cell clipped PPO.

    :param config: an :class:`~agents.l2l.ppo.L2LConfig`; or pass its fields as keywords.

    The network is built from the first observation space or observation it sees (grid-size
    independent). ``act(obs, deterministic=True)`` selects cells with probability > 0.5;
    ``deterministic=False`` samples. :meth:`probabilities` gives the per-cell probabilities.
    """

    is_learner = True

    def __init__(self, config: ppo.L2LConfig | None = None, **kwargs: Any) -> None:
        if config is not None and kwargs:
            raise TypeError("L2LAgent: pass config= or keywords, not both")
        if config is None:
            fields = {f.name for f in dataclasses.fields(ppo.L2LConfig)}
            unknown = sorted(set(kwargs) - fields)
            if unknown:
                raise TypeError(f"agent 'l2l': unknown parameter(s) {unknown}; "
                                f"expected some of {sorted(fields)}")
            config = ppo.L2LConfig(**kwargs)
        self.config = config
        self.device = _device(config.device)
        self.net: SelectorNet | None = None
        self.optimizer: torch.optim.Optimizer | None = None
        self.history: list[dict[str, Any]] = []
        self.gen = torch.Generator(device=self.device).manual_seed(config.seed)
        self.rng = np.random.default_rng(config.seed)
        self._rollout = ppo.RolloutState()

    @property
    def last_obs(self) -> dict[str, np.ndarray] | None:
        """The observation ``learn`` stopped at (batched, leading dim = number of envs): the
        env's current state, where a caller may go on acting."""
        return self._rollout.obs

    # ------------------------------------------------------------------ network
    def build(self, layout: ObsLayout) -> SelectorNet:
        """Create the network (seeded, without touching torch's global generator) and optimiser."""
        c = self.config
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(c.seed)
            net = SelectorNet(layout, hidden=c.hidden, dilations=c.dilations, cond_hidden=c.cond_hidden,
                              coord=c.coord, init_select_prob=c.init_select_prob)
        self.net = net.to(self.device)
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=c.learning_rate, eps=1e-5)
        return self.net

    def _net_for(self, batch: dict[str, np.ndarray]) -> SelectorNet:
        return self.net if self.net is not None else self.build(ObsLayout.from_obs(batch))

    # ------------------------------------------------------------------ acting
    def logits(self, obs: Obs) -> np.ndarray:
        """Per-cell selection logits, ``(G*G,)`` or ``(B, G*G)`` float32 (they rank cells even
        where the probabilities saturate at 0 or 1)."""
        batch, single = as_batch(obs)
        net = self._net_for(batch)
        with torch.no_grad():
            logits = net(*net.layout.tensors(batch, self.device))[0]
        return unbatch(logits.cpu().numpy().astype(np.float32), single)

    def probabilities(self, obs: Obs) -> np.ndarray:
        """Per-cell selection probabilities, ``(G*G,)`` or ``(B, G*G)`` float32."""
        return (1.0 / (1.0 + np.exp(-self.logits(obs).astype(np.float64)))).astype(np.float32)

    def act(self, obs: Obs, deterministic: bool = True) -> np.ndarray:
        probs = self.probabilities(obs)
        if deterministic:
            return (probs > 0.5).astype(np.int8)
        t = torch.as_tensor(probs, device=self.device)
        return torch.bernoulli(t, generator=self.gen).cpu().numpy().astype(np.int8)

    # ------------------------------------------------------------------ learning
    def learn(self, env: Any, total_steps: int, callback: Callback | None = None,
              writer: Any | None = None) -> dict[str, Any]:
        """Train on ``env`` (a gymnasium env or vector env) for ``total_steps`` env steps.

        Calling again on the same env continues from its current state.
        :param writer: optional ``torch.utils.tensorboard.SummaryWriter``.
        """
        if total_steps < 1:
            raise ValueError(f"total_steps must be >= 1, got {total_steps}")
        space = getattr(env, "single_observation_space", None) or env.observation_space
        check_dict_space(space, "L2LAgent.learn")
        if self.net is None:
            self.build(ObsLayout.from_space(space))
        assert self.net is not None and self.optimizer is not None
        self.net.train()
        cb = None if callback is None else (lambda record: callback(self, record))
        return ppo.learn(self.net, self.optimizer, env, total_steps, self.config, self._rollout,
                         self.gen, self.rng, self.history, cb, writer)

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | Path) -> Path:
        if self.net is None:
            raise ValueError("L2LAgent.save: the selector has no network yet (call learn or act first)")
        path = write_manifest(path, self.name, config=dataclasses.asdict(self.config),
                              layout=dataclasses.asdict(self.net.layout), history=self.history)
        assert self.optimizer is not None
        torch.save({"net": self.net.state_dict(), "optimizer": self.optimizer.state_dict(),
                    "gen": self.gen.get_state(), "rng": self.rng.bit_generator.state}, path / WEIGHTS)
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
        agent.history = list(data.get("history", []))
        return agent
