"""``sb3:<algo>``: any Stable-Baselines3 algorithm behind the common agent interface.

``make("sb3:ppo")`` / ``make("sb3:a2c")`` train on the env's ``MultiBinary(G*G)`` action directly.
Algorithms that only support ``Box`` actions (``sac``, ``td3``, ``ddpg``) are trained on the env
wrapped in :class:`l2l_env.wrappers.CellWeightsAction` (per-cell weights in ``[-1, 1]``; a cell is
selected when its weight is > 0) and their actions are mapped back to a selection in :meth:`act`.
The policy is ``MultiInputPolicy`` with :class:`agents.features.MapFeaturesExtractor`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import stable_baselines3 as sb3
from gymnasium import spaces
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm

from agents.base import Agent, Callback, read_manifest, register, write_manifest
from agents.features import MapFeaturesExtractor
from agents.obs import Obs, as_batch, check_dict_space, unbatch

MODEL = "model.zip"
OFF_POLICY_BUFFER = 4096
"""Default replay size for off-policy algorithms (a Dict transition at G=32 is ~36 KB)."""


def sb3_algorithms() -> dict[str, type[BaseAlgorithm]]:
    """Lower-case name -> SB3 algorithm class (those that ``stable_baselines3`` exports)."""
    out = {}
    for name in sb3.__all__:
        obj = getattr(sb3, name)
        if isinstance(obj, type) and issubclass(obj, BaseAlgorithm):
            out[name.lower()] = obj
    return out


def _action_form(algo: str, cls: type[BaseAlgorithm]) -> str:
    """``"binary"`` (trains on MultiBinary) or ``"weights"`` (needs the CellWeightsAction wrapper)."""
    if issubclass(cls, OnPolicyAlgorithm):
        return "binary"
    if issubclass(cls, OffPolicyAlgorithm) and cls is not sb3.DQN:
        return "weights"
    raise ValueError(f"sb3:{algo} cannot act on a MultiBinary(G*G) selection nor on per-cell weights "
                     f"(it supports Discrete actions only); use one of "
                     f"{sorted(n for n, c in sb3_algorithms().items() if c is not sb3.DQN)}")


class _HistoryCallback(BaseCallback):
    """Collects per-step rewards/coverage/precision into records of ``every`` env steps."""

    def __init__(self, agent: SB3Agent, every: int, callback: Callback | None,
                 writer: Any | None = None) -> None:
        super().__init__()
        self.agent, self.every, self.user_cb, self.writer = agent, every, callback, writer
        self._rewards: list[float] = []
        self._cov: list[float] = []
        self._prec: list[float] = []

    def _on_step(self) -> bool:
        self._rewards.extend(np.asarray(self.locals["rewards"], float).ravel().tolist())
        for info in self.locals.get("infos", []):
            self._cov.append(float(info.get("coverage", np.nan)))
            self._prec.append(float(info.get("pl_precision", np.nan)))
        if len(self._rewards) >= self.every:
            return self._flush()
        return True

    def _on_training_end(self) -> None:
        if self._rewards:
            self._flush()

    def _flush(self) -> bool:
        def nanmean(xs: list[float]) -> float:
            a = np.asarray(xs, float)
            return float(a[np.isfinite(a)].mean()) if np.isfinite(a).any() else float("nan")

        self.agent.env_steps += len(self._rewards)
        record = {"update": len(self.agent.history) + 1, "env_steps": self.agent.env_steps,
                  "mean_reward": float(np.mean(self._rewards)), "coverage": nanmean(self._cov),
                  "pl_precision": nanmean(self._prec)}
        self.agent.history.append(record)
        if self.writer is not None:
            for key, value in record.items():
                if math.isfinite(value):
                    self.writer.add_scalar(f"agent/{key}", float(value), record["env_steps"])
        self._rewards, self._cov, self._prec = [], [], []
        if self.user_cb is not None and self.user_cb(self.agent, record) is False:
            return False
        return True


@register("sb3:", variant_arg="algo")
class SB3Agent(Agent):
    """A Stable-Baselines3 algorithm on the env's Dict observation.

    :param algo: SB3 algorithm name, lower case (``ppo``, ``a2c``, ``sac``, ``td3``, ``ddpg``).
    :param features_dim: size of :class:`MapFeaturesExtractor`'s output.
    :param policy_kwargs: extra SB3 ``policy_kwargs`` (merged over the features extractor's).
    :param seed: SB3 seed. :param device: torch device (``"cpu"``, ``"cuda"``, ``"auto"``).
    :param algo_kwargs: passed to the algorithm's constructor (``n_steps``, ``learning_rate`` ...);
        off-policy algorithms default to ``buffer_size=4096``.
    """

    is_learner = True

    def __init__(self, algo: str = "ppo", features_dim: int = 256,
                 policy_kwargs: dict[str, Any] | None = None, seed: int = 0, device: str = "cpu",
                 verbose: int = 0, **algo_kwargs: Any) -> None:
        algos = sb3_algorithms()
        key = algo.lower()
        if key not in algos:
            raise KeyError(f"unknown Stable-Baselines3 algorithm {algo!r} in 'sb3:{algo}'; "
                           f"known: {sorted(algos)}")
        self.algo, self.algo_cls = key, algos[key]
        self.action_form = _action_form(key, self.algo_cls)
        self.name = f"sb3:{key}"  # type: ignore[misc]  # the instance's registry name
        self.features_dim, self.seed, self.device, self.verbose = features_dim, seed, device, verbose
        self.policy_kwargs = dict(policy_kwargs or {})
        self.algo_kwargs = dict(algo_kwargs)
        if self.action_form == "weights":
            self.algo_kwargs.setdefault("buffer_size", OFF_POLICY_BUFFER)
        self.model: BaseAlgorithm | None = None
        self.history: list[dict[str, Any]] = []
        self.env_steps = 0

    # ------------------------------------------------------------------ env
    def wrap_env(self, env: Any) -> Any:
        """``env`` as this algorithm needs it (the CellWeightsAction wrapper for Box-only ones)."""
        check_dict_space(env.observation_space, f"{self.name}.learn")
        if self.action_form == "binary":
            if not isinstance(env.action_space, spaces.MultiBinary):
                raise ValueError(f"{self.name}: expected the env's MultiBinary action space, "
                                 f"got {env.action_space}")
            return env
        if isinstance(env.action_space, spaces.Box):
            return env
        from l2l_env.wrappers import CellWeightsAction  # the env package's wrapper

        return CellWeightsAction(env)

    def _new_model(self, env: Any) -> BaseAlgorithm:
        pk = {"features_extractor_class": MapFeaturesExtractor,
              "features_extractor_kwargs": {"features_dim": self.features_dim}, **self.policy_kwargs}
        return self.algo_cls("MultiInputPolicy", env, policy_kwargs=pk, seed=self.seed,
                             device=self.device, verbose=self.verbose, **self.algo_kwargs)

    # ------------------------------------------------------------------ interface
    @classmethod
    def run_defaults(cls, name: str, options: dict[str, Any]) -> dict[str, Any]:
        """On-policy algorithms get a rollout of 64 steps (SB3's 2048 would overshoot short
        loops); PPO minibatches of 32."""
        algo = name.split(":", 1)[1].lower() if ":" in name else ""
        if algo not in ("ppo", "a2c"):
            return {}
        return {"n_steps": 64, **({"batch_size": 32} if algo == "ppo" else {})}

    @classmethod
    def rollout_length(cls, name: str, options: dict[str, Any]) -> int:
        return int(options.get("n_steps", 1))

    @property
    def savable(self) -> bool:
        return self.model is not None

    def learn(self, env: Any, total_steps: int, callback: Callback | None = None,
              writer: Any | None = None) -> dict[str, Any]:
        """Train for ``total_steps`` env steps; records one history entry per rollout
        (on-policy) or per 64 steps (off-policy), also as ``agent/<key>`` scalars to ``writer``."""
        env = self.wrap_env(env)
        if self.model is None:
            self.model = self._new_model(env)
            reset = True
        else:
            self.model.set_env(env)
            reset = False
        on_policy = isinstance(self.model, OnPolicyAlgorithm)
        every = self.model.n_steps * self.model.n_envs if on_policy else 64
        before = len(self.history)
        self.model.learn(total_timesteps=total_steps,
                         callback=_HistoryCallback(self, every, callback, writer),
                         reset_num_timesteps=reset)
        return {"env_steps": self.env_steps, "updates": len(self.history) - before,
                "last": self.history[-1] if self.history else {}}

    def act(self, obs: Obs, deterministic: bool = True) -> np.ndarray:
        if self.model is None:
            raise RuntimeError(f"{self.name}: no model yet; call learn(env, ...) or load(path) first")
        batch, single = as_batch(obs)
        action, _ = self.model.predict(batch, deterministic=deterministic)
        action = np.asarray(action).reshape(len(batch["prior"]), -1)
        sel = action > 0 if self.action_form == "weights" else action > 0.5
        return unbatch(sel.astype(np.int8), single)

    def save(self, path: str | Path) -> Path:
        if self.model is None:
            raise ValueError(f"{self.name}.save: nothing to save yet (call learn first)")
        path = write_manifest(path, self.name, algo=self.algo, features_dim=self.features_dim,
                              seed=self.seed, device=self.device, env_steps=self.env_steps,
                              history=self.history)
        self.model.save(path / MODEL)
        return path

    @classmethod
    def load(cls, path: str | Path, device: str | None = None) -> SB3Agent:
        data = read_manifest(path)
        if not data["name"].startswith("sb3:"):
            raise ValueError(f"{Path(path)}: saved agent is {data['name']!r}, not an sb3:<algo> agent")
        agent = cls(algo=data["algo"], features_dim=data["features_dim"], seed=data["seed"],
                    device=device or data["device"])
        agent.model = agent.algo_cls.load(Path(path) / MODEL, device=agent.device)
        agent.history = list(data.get("history", []))
        agent.env_steps = int(data.get("env_steps", 0))
        return agent
