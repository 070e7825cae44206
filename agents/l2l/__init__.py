"""The L2L reinforced selector: policy network, per-cell PPO, and the registered ``l2l`` agent."""

from agents.l2l.agent import L2LAgent
from agents.l2l.policy import ObsLayout, SelectorNet
from agents.l2l.ppo import L2LConfig

__all__ = ["L2LAgent", "L2LConfig", "ObsLayout", "SelectorNet"]
