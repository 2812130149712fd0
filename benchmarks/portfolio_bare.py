"""The bare numpy loops benchmarks/portfolio_env.py times the portfolio envs against: a step's
maths (environments.envs.accounting.rebalance, the held window, the observation) and nothing
else, for one env (PortfolioEnv's) and for B envs at once (PortfolioVectorEnv's); the tests check
that they step as those envs do."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from environments.envs.accounting import rebalance


class BareArrays(NamedTuple):
    features: np.ndarray  # float32 [T, N, F]
    can_hold: np.ndarray  # bool [T, N]
    step_returns: np.ndarray  # float64 [T, N]
    positions: np.ndarray  # float64 [K]


class BareState(NamedTuple):
    t: int  # the current bar
    end: int  # the bar the episode ends at
    weights: np.ndarray  # float64 [N]
    value: float
    held: np.ndarray  # float64 [window, N]: levels held at bars t - window + 1 .. t


def bare_step(state: BareState, action: np.ndarray, arrays: BareArrays, config):
    """PortfolioEnv.step's maths and nothing else (no checks, no info, no episode logic):
    (obs [N, window, F + 2], next state, reward, bankrupt)."""
    t, window = state.t, len(state.held)
    hold = arrays.can_hold[t]
    levels = np.where(hold, arrays.positions[action], 0.0)
    reward, value, _, bankrupt, weights = rebalance(
        state.value, state.weights, levels, hold, arrays.step_returns[t], config.trade_cost_rate,
        config.borrow_rate, np, config.risk_aversion)
    held = np.concatenate([state.held[1:], levels[None]])
    rows = slice(t + 2 - window, t + 2)  # the window ending at bar t + 1
    obs = np.concatenate([arrays.features[rows], held[..., None], arrays.can_hold[rows][..., None]],
                         axis=2, dtype=np.float32).transpose(1, 0, 2)
    return obs, BareState(t + 1, state.end, weights, float(value), held), float(reward), bool(bankrupt)


class BareVectorState(NamedTuple):
    t: np.ndarray  # int [B]: the current bars
    weights: np.ndarray  # float64 [B, N]
    value: np.ndarray  # float64 [B]
    held: np.ndarray  # float64 [B, window, N]


def bare_vector_step(state: BareVectorState, actions: np.ndarray, arrays: BareArrays, config):
    """PortfolioVectorEnv.step's maths and nothing else: (obs [B, N, window, F + 2], next
    state, rewards [B], bankrupt [B])."""
    t, window = state.t, state.held.shape[1]
    hold = arrays.can_hold[t]  # [B, N]
    levels = np.where(hold, arrays.positions[actions], 0.0)
    reward, value, _, bankrupt, weights = rebalance(
        state.value, state.weights, levels, hold, arrays.step_returns[t], config.trade_cost_rate,
        config.borrow_rate, np, config.risk_aversion)
    held = np.concatenate([state.held[:, 1:], levels[:, None]], axis=1)
    rows = t[:, None] + np.arange(2 - window, 2)  # [B, window]: the windows ending at bars t + 1
    obs = np.concatenate([arrays.features[rows], held[..., None], arrays.can_hold[rows][..., None]],
                         axis=3, dtype=np.float32).transpose(0, 2, 1, 3)
    return obs, BareVectorState(t + 1, weights, value, held), reward, bankrupt
