"""Variants of the double integrator for the cost-critic bias study (single-variable experiments), registered when
this module is imported through an environment id of the form ``di_variants:Name-v0`` (with ``benchmarks/envs`` on
``PYTHONPATH``):

* ``DIFeasibleStarts-v0``: initial states drawn only from the exact feasible set (no inherently infeasible starts);
* ``DINoTermination-v0``: no termination at ``|x| > 2 x_max`` (leaving the domain no longer ends the cost);
* ``DIFastStarts-v0``: initial velocities drawn from [-4, 4] instead of [-3, 3] (positions as before), so every
  state with >= 1 m of slack on the plane that the λ maps and ``lambda_slack.py`` probe can be a start (the
  "λ on slack states" study: does data there empty the band of high λ?).

Everything else (dynamics, reward, cost, time limit) is ``statewise/DoubleIntegrator-v0``.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np

from statewise.envs.double_integrator import DoubleIntegratorEnv


class FeasibleStarts(DoubleIntegratorEnv):
    def reset(self, *, seed=None, options=None):
        obs, info = super().reset(seed=seed, options=options)
        while options is None and not info["feasible"]:  # rejection sampling from the same uniform box
            obs, info = super().reset(options={"state": [self.np_random.uniform(-4.5, 4.5),
                                                         self.np_random.uniform(-3.0, 3.0)]})
        return obs, info


class FastStarts(DoubleIntegratorEnv):
    def reset(self, *, seed=None, options=None):
        obs, info = super().reset(seed=seed, options=options)
        if options is None:  # same seeding, the plane's velocity range (DoubleIntegratorEnv.plane().ylim)
            v_lo, v_hi = self.plane().ylim
            obs, info = super().reset(options={"state": [self.np_random.uniform(-4.5, 4.5),
                                                         self.np_random.uniform(v_lo, v_hi)]})
        return obs, info


class NoTermination(DoubleIntegratorEnv):
    def transition(self, state, action):
        next_state, reward, cost, terminated = super().transition(state, action)
        return next_state, reward, cost, np.zeros_like(terminated)


for _id, _cls in (("DIFeasibleStarts-v0", FeasibleStarts), ("DINoTermination-v0", NoTermination),
                  ("DIFastStarts-v0", FastStarts)):
    if _id not in gym.registry:
        gym.register(id=_id, entry_point=f"{__name__}:{_cls.__name__}", max_episode_steps=200)
