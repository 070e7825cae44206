"""``sb3:<algo>``: a Stable-Baselines3 algorithm behind the common agent interface.

``make("sb3:ppo")`` / ``make("sb3:a2c")`` train on the env's action directly, in either form:
``construct`` (``MultiDiscrete([4] * G*G)``, the default) and ``select`` (``MultiBinary(G*G)``).
An algorithm that acts in neither (DQN: ``Discrete``; SAC, TD3, DDPG: ``Box``) is refused when it
is made, naming the ones that work. The policy is ``MultiInputPolicy`` with
:class:`agents.features.MapFeaturesExtractor`: one global feature vector and a flat per-cell head,
which is what a generic RL agent brings (the ``l2l`` constructor is fully convolutional instead).

SB3 draws from the process-global RNGs (torch for actions, numpy for minibatches) and seeds them
when a model is built or loaded; a run restores them with its checkpoints, which makes resume
exact together with :meth:`SB3Agent.continue_from`.
"""

from __future__ import annotations

import inspect
import math
from pathlib import Path
from typing import Any

import numpy as np
import stable_baselines3 as sb3
from gymnasium import spaces
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import KVWriter, Logger
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv, VecEnvWrapper

from agents.base import Agent, Callback, read_manifest, register, space_names, write_manifest
from agents.features import MapFeaturesExtractor
from agents.obs import Obs, as_batch, check_dict_space, unbatch
from l2l_env import schema

MODEL = "model.zip"
ENV_SPACES: tuple[type[spaces.Space], ...] = (spaces.MultiDiscrete, spaces.MultiBinary)
"""The space types of the env's two action forms (``construct``, ``select``)."""


def sb3_algorithms() -> dict[str, type[BaseAlgorithm]]:
    """Lower-case name -> SB3 algorithm class (those that ``stable_baselines3`` exports)."""
    out = {}
    for name in sb3.__all__:
        obj = getattr(sb3, name)
        if isinstance(obj, type) and issubclass(obj, BaseAlgorithm):
            out[name.lower()] = obj
    return out


def algorithm_action_spaces(cls: type[BaseAlgorithm]) -> tuple[type[spaces.Space], ...]:
    """The action-space types SB3 algorithm ``cls`` acts in. SB3 declares them inside each
    constructor only: its on-policy algorithms take every basic space, DQN ``Discrete``, the
    other off-policy ones ``Box``."""
    if issubclass(cls, OnPolicyAlgorithm):
        return (spaces.Box, spaces.Discrete, spaces.MultiDiscrete, spaces.MultiBinary)
    if issubclass(cls, sb3.DQN):
        return (spaces.Discrete,)
    return (spaces.Box,)


def supported_algorithms() -> list[str]:
    """``["sb3:a2c", "sb3:ppo"]``: the SB3 algorithms that act in both env action forms."""
    return sorted(f"sb3:{name}" for name, cls in sb3_algorithms().items()
                  if all(t in algorithm_action_spaces(cls) for t in ENV_SPACES))


def _algorithm(algo: str) -> tuple[str, type[BaseAlgorithm]]:
    """``(name, class)`` of ``algo``; ``KeyError`` for an unknown one, ``ValueError`` for one that
    acts in neither env action form; both name the supported algorithms."""
    algos, key = sb3_algorithms(), algo.lower()
    if key not in algos:
        raise KeyError(f"unknown Stable-Baselines3 algorithm {algo!r} in 'sb3:{algo}'; the ones "
                       f"that act in the L2L env: {', '.join(supported_algorithms())}")
    found = algorithm_action_spaces(algos[key])
    if not any(t in found for t in ENV_SPACES):
        raise ValueError(f"sb3:{key} acts in {space_names(found)} action spaces only, but the L2L "
                         f"env's actions are MultiDiscrete (action='construct') or MultiBinary "
                         f"(action='select'); use one of {', '.join(supported_algorithms())}")
    return key, algos[key]


class _GoOnFrom(VecEnvWrapper):
    """A vec env whose next ``reset()`` returns ``obs``, where the env already stands, instead of
    resetting it (SB3 resets before learning when it has no last observation)."""

    def __init__(self, venv: VecEnv, obs: dict[str, np.ndarray]) -> None:
        super().__init__(venv)
        self.pending: dict[str, np.ndarray] | None = obs

    def reset(self) -> Any:
        if self.pending is not None:
            obs, self.pending = self.pending, None
            return obs
        return self.venv.reset()

    def step_wait(self) -> Any:
        return self.venv.step_wait()


class _WriterOutput(KVWriter):
    """SB3's own log (``train/value_loss`` ...) as ``agent/<key>`` scalars of a TensorBoard
    ``SummaryWriter`` (wall-clock ``time/`` keys left out)."""

    def __init__(self, writer: Any) -> None:
        self.writer = writer

    def write(self, key_values: dict[str, Any], key_excluded: dict[str, tuple[str, ...]],
              step: int = 0) -> None:
        for key, value in key_values.items():
            if key.startswith("time/") or "tensorboard" in (key_excluded.get(key) or ()):
                continue
            if isinstance(value, (int, float, np.number)) and math.isfinite(float(value)):
                self.writer.add_scalar(f"agent/{key}", float(value), step)

    def close(self) -> None:
        """The writer belongs to the caller."""


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
            self._cov.append(float(info.get(schema.COVERAGE, np.nan)))
            self._prec.append(float(info.get(schema.PL_PRECISION, np.nan)))
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
    """A Stable-Baselines3 algorithm on the env's Dict observation and its action, either form.

    :param algo: SB3 algorithm name, lower case (``ppo``, ``a2c``: :func:`supported_algorithms`).
    :param features_dim: size of :class:`MapFeaturesExtractor`'s output.
    :param policy_kwargs: extra SB3 ``policy_kwargs`` (merged over the features extractor's).
    :param seed: SB3 seed. :param device: torch device (``"cpu"``, ``"cuda"``, ``"auto"``).
    :param algo_kwargs: passed to the algorithm's constructor (``n_steps``, ``learning_rate`` ...).
    """

    is_learner = True

    def __init__(self, algo: str = "ppo", features_dim: int = 256,
                 policy_kwargs: dict[str, Any] | None = None, seed: int = 0, device: str = "cpu",
                 verbose: int = 0, **algo_kwargs: Any) -> None:
        self.algo, self.algo_cls = _algorithm(algo)
        self.name = f"sb3:{self.algo}"  # type: ignore[misc]  # the instance's registry name
        self.features_dim, self.seed, self.device, self.verbose = features_dim, seed, device, verbose
        self.policy_kwargs = dict(policy_kwargs or {})
        self.algo_kwargs = dict(algo_kwargs)
        self.model: BaseAlgorithm | None = None
        self.history: list[dict[str, Any]] = []
        self.env_steps = 0
        self._env: Any = None
        """The env the model last learned on (a later ``learn`` on it goes on where it stopped)."""
        self._go_on: dict[str, np.ndarray] | None = None
        """The observation :meth:`continue_from` set for the next ``learn`` to start from."""

    # ------------------------------------------------------------------ what it runs on
    @classmethod
    def supported_action_spaces(cls, name: str) -> tuple[type[spaces.Space], ...]:
        """The env's action forms that the algorithm acts in (its actions are the env's)."""
        found = algorithm_action_spaces(_algorithm(name.split(":", 1)[1])[1])
        return tuple(t for t in ENV_SPACES if t in found)

    @classmethod
    def check_options(cls, name: str, options: dict[str, Any]) -> None:
        """The algorithm is one that acts in the env, and every option is a keyword of this
        class or of the algorithm's constructor (their values are checked when the model is
        built)."""
        _, algo_cls = _algorithm(name.split(":", 1)[1])
        params = inspect.signature(algo_cls.__init__).parameters
        known = (cls.option_names() - {"algo"}) | (
            set(params) - {"self", "policy", "env", "_init_setup_model"})
        unknown = sorted(set(options) - known)
        if unknown:
            raise TypeError(f"agent {name!r}: unknown option(s) {unknown}; expected some of "
                            f"{sorted(known)}")

    # ------------------------------------------------------------------ run protocol
    @classmethod
    def run_defaults(cls, name: str, options: dict[str, Any]) -> dict[str, Any]:
        """A rollout of 64 steps (SB3's 2048 would overshoot short loops); PPO minibatches of 32,
        or the whole rollout when it is shorter."""
        algo = name.split(":", 1)[1].lower() if ":" in name else ""
        if algo not in ("ppo", "a2c"):
            return {}
        n_steps = int(options.get("n_steps", 64))
        return {"n_steps": n_steps, **({"batch_size": min(32, n_steps)} if algo == "ppo" else {})}

    @classmethod
    def rollout_length(cls, name: str, options: dict[str, Any]) -> int:
        return int(options.get("n_steps", 1))

    @property
    def savable(self) -> bool:
        return self.model is not None

    def continue_from(self, env: Any, obs: Obs, counters: dict[str, int]) -> None:
        """The next :meth:`learn` on ``env`` starts from ``obs`` without resetting it. A run
        hands over whole rollouts, so the episode-start flag of ``obs`` (which PPO and A2C read
        only inside a rollout) needs no carrying over."""
        self._env = None
        self._go_on = as_batch(obs)[0]
        self.env_steps = int(counters.get("env_steps", self.env_steps))

    def counters(self) -> dict[str, int]:
        return {"env_steps": int(self.env_steps), "updates": len(self.history)}

    # ------------------------------------------------------------------ learning
    def _vec_env(self, env: Any) -> VecEnv:
        """``env`` as SB3's vec env; starting from the :meth:`continue_from` observation if set."""
        venv: VecEnv = DummyVecEnv([lambda: env])
        if self._go_on is not None:
            venv, self._go_on = _GoOnFrom(venv, self._go_on), None
        return venv

    def _new_model(self, venv: VecEnv) -> BaseAlgorithm:
        pk = {"features_extractor_class": MapFeaturesExtractor,
              "features_extractor_kwargs": {"features_dim": self.features_dim},
              **self.policy_kwargs}
        return self.algo_cls("MultiInputPolicy", venv, policy_kwargs=pk, seed=self.seed,
                             device=self.device, verbose=self.verbose, **self.algo_kwargs)

    def learn(self, env: Any, total_steps: int, callback: Callback | None = None,
              writer: Any | None = None) -> dict[str, Any]:
        """Train for ``total_steps`` env steps, in whole rollouts. A first call resets ``env``; a
        later call on the same env, or one after :meth:`continue_from`, goes on from where it
        stands. Records one history entry per rollout, also as ``agent/<key>`` scalars to
        ``writer``, beside SB3's own log of each update (``agent/train/value_loss`` ...)."""
        check_dict_space(env.observation_space, f"{self.name}.learn")
        type(self).check_action_space(self.name, {}, env.action_space)
        fresh = self.model is None
        if self.model is None:
            self.model = self._new_model(self._vec_env(env))
        elif env is not self._env:
            self.model.set_env(self._vec_env(env), force_reset=True)
        self._env = env
        self.model.set_logger(Logger(None, [_WriterOutput(writer)] if writer is not None else []))
        assert isinstance(self.model, OnPolicyAlgorithm)  # the only kind _algorithm accepts
        every = self.model.n_steps * self.model.n_envs
        before = len(self.history)
        self.model.learn(total_timesteps=total_steps, log_interval=1,
                         callback=_HistoryCallback(self, every, callback, writer),
                         reset_num_timesteps=fresh)
        self.model.logger.dump(step=self.model.num_timesteps)  # the last update's losses
        return {"env_steps": self.env_steps, "updates": len(self.history) - before,
                "last": self.history[-1] if self.history else {}}

    # ------------------------------------------------------------------ acting
    def act(self, obs: Obs, deterministic: bool = True) -> np.ndarray:
        """The env's action for ``obs``: choice codes (``construct``) or 0/1 (``select``), int8."""
        if self.model is None:
            raise RuntimeError(f"{self.name}: no model yet; call learn(env, ...) or load(path) first")
        batch, single = as_batch(obs)
        action, _ = self.model.predict(batch, deterministic=deterministic)
        action = np.asarray(action).reshape(len(batch["prior"]), -1)
        return unbatch(action.astype(np.int8), single)

    # ------------------------------------------------------------------ persistence
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
