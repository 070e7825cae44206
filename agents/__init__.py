"""Interchangeable pseudo-label selection agents, built by name.

>>> import agents
>>> agents.available()          # doctest: +SKIP
['agreement', 'all', 'l2l', 'none', 'prior', 'random', 'sb3:<variant>', 'threshold']
>>> agent = agents.make("threshold", tau=0.95)
>>> action = agent.act(obs)     # doctest: +SKIP

See :mod:`agents.base` for the interface and how to register a new agent.
"""

from agents.base import Agent, Callback, Stepper, agent_class, available, load, make, register
from agents.heuristics import (AgreementAgent, AllAgent, CellRuleAgent, NoneAgent, PriorAgent,
                               RandomAgent, ThresholdAgent)
from agents.l2l import L2LAgent, L2LConfig
from agents.sb3_agent import SB3Agent

__all__ = ["Agent", "AgreementAgent", "AllAgent", "Callback", "CellRuleAgent", "L2LAgent",
           "L2LConfig", "NoneAgent", "PriorAgent", "RandomAgent", "SB3Agent", "Stepper",
           "ThresholdAgent", "agent_class", "available", "load", "make", "register"]
