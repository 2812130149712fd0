"""The trading accounting of one step (costs, borrow, growth, bankruptcy), written once for
every env: on python floats (TradingEnv), numpy arrays (TradingVectorEnv) and jax.numpy arrays
(JaxTradingEnv).

For the step at bar t: position p held before, target p' chosen now, r the close-to-close
return from t to t+1; positions are fractions of the portfolio value V:
    cost_fraction = |p' - p| * trade_cost_rate + max(-p', 0) * borrow_rate
    change        = p' * r - cost_fraction          (the growth of V over the step, minus 1)
    V'            = V * (1 + change),   reward = log1p(change) = log(V' / V)
The position is re-established at each close without charging for its drift with the price.
With a risk aversion kappa >= 0 (0 by default) the reward is a mean-variance utility of the step,
    reward = log1p(change) - kappa / 2 * change^2,
whose sum an agent maximizes by trading expected growth against its variance: a measure such as
Sharpe, which the log growth alone does not reward, then counts in what is learned (the portfolio
value, and every metric computed from it, is the same whatever kappa).
If 1 + change <= MIN_GROWTH the portfolio is bankrupt: V' = max(V * (1 + change), 0), the
reward is LOG_MIN_GROWTH and the episode terminates. Working with `change` instead of the growth
keeps float32 accurate: log1p(change) loses nothing of a small change, log(1 + change) would.
"""

from __future__ import annotations

import math
import types

import numpy as np

MIN_GROWTH = 1e-6
LOG_MIN_GROWTH = math.log(MIN_GROWTH)
MIN_CHANGE = MIN_GROWTH - 1.0  # a change at or below this is bankruptcy

# What `settle` needs of an array module, for python floats: TradingEnv's single-env step
# stays in python float maths (several times faster than numpy scalars). `maximum` is a
# lambda: the builtin max takes twice as long for two floats.
SCALAR = types.SimpleNamespace(
    where=lambda condition, if_true, if_false: if_true if condition else if_false,
    maximum=lambda a, b: a if a > b else b,
    log1p=math.log1p,
)


def cost_fraction(position, target, trade_cost_rate, borrow_rate):
    """The step's costs as a fraction of the portfolio value: trading from `position` to
    `target` and borrowing for a short `target` (operators only: floats or any arrays)."""
    # (|p'| - p') / 2 is max(-p', 0), exactly
    return abs(target - position) * trade_cost_rate + (abs(target) - target) * (0.5 * borrow_rate)


def cost_table(positions, trade_cost_rate: float, borrow_rate: float) -> np.ndarray:
    """float64 [K + 1, K]: cost_fraction of moving from positions[i] (row K: the flat start
    of an episode) to positions[j], for envs that look the costs up instead of computing them."""
    levels = np.asarray(positions, dtype=np.float64)  # [K]
    start_levels = np.append(levels, 0.0)  # [K + 1]
    return cost_fraction(start_levels[:, None], levels[None, :], trade_cost_rate, borrow_rate)


def settle(value, target, step_return, cost_fraction, xp, risk_aversion=0.0):
    """(reward, value after the step, cost paid in portfolio currency, bankrupt) of one step
    with `cost_fraction` and `risk_aversion` kappa (above), elementwise over arrays (all
    arguments broadcast) or on python floats.

    value: V before the step; target: p', held over the step; step_return: r; xp: numpy or
    jax.numpy for arrays, SCALAR for python floats (only operators and xp.where / xp.maximum /
    xp.log1p are used, so the dtype of the arguments is the dtype of the maths: float32 under
    jax by default).
    """
    change = target * step_return - cost_fraction
    bankrupt = change <= MIN_CHANGE
    growth = xp.log1p(xp.maximum(change, MIN_CHANGE))
    if not isinstance(risk_aversion, (int, float)) or risk_aversion:  # a number 0: nothing to add
        growth = growth - (0.5 * risk_aversion) * change * change
    reward = xp.where(bankrupt, LOG_MIN_GROWTH, growth)
    value_after = value * xp.maximum(change + 1.0, 0.0)
    return reward, value_after, value * cost_fraction, bankrupt


def account(value, position, target, step_return, trade_cost_rate, borrow_rate, xp,
            risk_aversion=0.0):
    """settle() with the cost_fraction of trading from `position` to `target`."""
    return settle(value, target, step_return,
                  cost_fraction(position, target, trade_cost_rate, borrow_rate), xp, risk_aversion)


def rebalance(value, weights, levels, can_hold, step_returns, trade_cost_rate, borrow_rate, xp,
              risk_aversion=0.0):
    """One step of a portfolio of N instruments (arrays [..., N]; the env's portfolio envs and
    their baselines settle with it): target `levels` (each a position of the env's list, +1
    long) where an instrument `can_hold` (else 0: a held position is closed at this bar's
    price), as weights normalised by the number of holdable instruments (all +1 is the equally
    weighted portfolio), from the `weights` held before. Costs are cost_fraction's on each
    instrument's traded weight, summed; the growth is the weighted step returns', settled as one
    position. With one always-holdable instrument this is `account`, step for step.

    Returns (reward, value after, cost paid, bankrupt, new weights [..., N]).
    """
    holdable = xp.where(can_hold, 1.0, 0.0)
    count = xp.maximum(holdable.sum(axis=-1, keepdims=True), 1.0)
    new_weights = levels * holdable / count
    fraction = cost_fraction(weights, new_weights, trade_cost_rate, borrow_rate).sum(axis=-1)
    gross = (new_weights * step_returns).sum(axis=-1)
    reward, value_after, cost, bankrupt = settle(value, 1.0, gross, fraction, xp, risk_aversion)
    return reward, value_after, cost, bankrupt, new_weights
