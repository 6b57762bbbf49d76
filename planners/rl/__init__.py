"""The RL agent for adaptive time-course protocols (``planner: {name: rl, policy: PATH}``).

A policy trained with PPO (Stable-Baselines3) on the time-course simulator
(:mod:`simulators.timecourse`) decides, at each decision point of an ``adaptive_dosing``
plate, what each decision unit gets (drug increments, medium exchange) from that unit's
images so far. Modules:

- :mod:`planners.rl.problem`: what a policy is trained for (protocol settings, culture prior,
  imaging noise, objective);
- :mod:`planners.rl.history`: the observation (a unit's images and past actions) and its
  encoding;
- :mod:`planners.rl.env`: gymnasium environments over the simulator;
- :mod:`planners.rl.train`: ``python -m planners.rl.train --out policy.zip`` (``--tiny``: seconds);
- :mod:`planners.rl.policy`: versioned policy files (zip + sidecar with checksum, config,
  library versions);
- :mod:`planners.rl.decision`: ``decide(policy, history, seed) -> Decision`` (action + forecast);
- :mod:`planners.rl.planner`: :class:`RLPlanner`, the planner-interface wrapper;
- :mod:`planners.rl.evaluate`: closed-loop and open-loop runs on culture streams (benchmarks).

The policy's world model is the simulator named by its problem: training, the forecast in
``decide`` and the benchmarks use it; nothing else in production imports a simulator.
"""

from __future__ import annotations

from planners.rl.decision import Decision, ExpectedOutcome, decide
from planners.rl.history import ObservationHistory, TimePoint
from planners.rl.planner import RLPlanner
from planners.rl.policy import RLPolicy, TrainConfig, load_policy
from planners.rl.problem import DosingObjective, DosingProblem

__all__ = [
    "Decision",
    "DosingObjective",
    "DosingProblem",
    "ExpectedOutcome",
    "ObservationHistory",
    "RLPlanner",
    "RLPolicy",
    "TimePoint",
    "TrainConfig",
    "decide",
    "load_policy",
]
