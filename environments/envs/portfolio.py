"""JaxPortfolioEnv: N instruments traded at once as pure jax functions (gymnax style), settled by
environments.envs.accounting.rebalance in float32, so a whole training loop compiles; and
evaluate_portfolio_policy, which walks a panel in one lax.scan.

An action is one position index per instrument (int32 [N]); instrument i's target weight is
positions[a_i] / (instruments holdable at bar t), 0 where it cannot be held to the next bar.
The observation is float32 [N, window, F + 2]: per instrument and bar of the window, its
features, the position level it held there and whether it could be held (the tradable mask).
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from environments.data.panel import PanelData
from environments.envs.accounting import rebalance
from environments.envs.config import EnvConfig


class PortfolioParams(NamedTuple):
    """A panel's data and the env's settings as jax arrays (a pytree: a jit argument)."""

    features: jax.Array  # float32 [T, N, F]
    step_returns: jax.Array  # float32 [T, N]: close[t+1] / close[t] - 1 where holdable, else 0
    can_hold: jax.Array  # bool [T, N]: a position at bar t can be held to bar t + 1
    positions: jax.Array  # float32 [K]: the position level of each action
    first_step: jax.Array  # int32 []: the first bar an episode starts at (window, as TradingEnv)
    last_step: jax.Array  # int32 []: the last bar (no action is taken there)
    trade_cost_rate: jax.Array  # float32 []
    borrow_rate: jax.Array  # float32 []
    initial_value: jax.Array  # float32 []
    risk_aversion: jax.Array  # float32 []


class PortfolioState(NamedTuple):
    t: jax.Array  # int32 []: the current bar
    end: jax.Array  # int32 []: the bar at which the episode ends
    weights: jax.Array  # float32 [N]: the weights held over the step that led to bar t
    value: jax.Array  # float32 []: the portfolio value at bar t
    held: jax.Array  # float32 [window, N]: the position levels held at bars t - window + 1 .. t


class PortfolioRef(NamedTuple):
    """An observation by reference (for replays): its bar, and each held level as an index into
    params.positions (-1: flat before the episode's start or where not holdable)."""

    t: jax.Array  # int32 []
    held: jax.Array  # int8 [window, N]


class PortfolioTrace(NamedTuple):
    """What evaluate_portfolio_policy records of a walk of L steps."""

    portfolio_values: jax.Array  # float32 [L + 1]
    weights: jax.Array  # float32 [L, N]: the weights held over each step
    rewards: jax.Array  # float32 [L]
    valid: jax.Array  # bool [L]: False after a bankruptcy


def make_portfolio_params(panel: PanelData, config: EnvConfig) -> PortfolioParams:
    """The PortfolioParams of `panel` under `config` (its window, positions, costs, kappa)."""
    if len(panel) < config.window + 2:
        raise ValueError(f"{panel.source}: has {len(panel)} bars, a portfolio episode with "
                         f"window={config.window} needs at least {config.window + 2}")
    return PortfolioParams(
        features=jnp.asarray(panel.features, jnp.float32),
        step_returns=jnp.asarray(panel.step_returns, jnp.float32),
        can_hold=jnp.asarray(panel.can_hold),
        positions=jnp.asarray(config.positions, jnp.float32),
        first_step=jnp.int32(config.window), last_step=jnp.int32(len(panel) - 1),
        trade_cost_rate=jnp.float32(config.trade_cost_rate),
        borrow_rate=jnp.float32(config.borrow_rate),
        initial_value=jnp.float32(config.initial_value),
        risk_aversion=jnp.float32(config.risk_aversion))


class JaxPortfolioEnv:
    """Episodes on one panel as pure functions of (key, state, action, params).

    mode="train": an episode starts at a uniformly drawn bar and lasts `episode_length` steps
    (then truncated). mode="eval": one episode from bar `window` (as TradingEnv) to the last
    bar. Bankruptcy terminates. `step`
    auto-resets as JaxTradingEnv's does, with the same info keys ("position" is the gross
    exposure sum |w|; "forced_closes" counts held instruments that lost their next bar).
    """

    def __init__(self, panel: PanelData, config: EnvConfig, mode: str = "train"):
        if mode not in ("train", "eval"):
            raise ValueError(f"mode must be 'train' or 'eval', got {mode!r}")
        self.panel, self.config, self.mode = panel, config, mode
        self.window, self.episode_length = config.window, config.episode_length
        self.num_instruments = panel.num_instruments
        self.num_actions = len(config.positions)
        self.observation_shape = (panel.num_instruments, config.window, len(panel.feature_names) + 2)
        if mode == "train" and len(panel) < config.window + config.episode_length + 1:
            raise ValueError(f"{panel.source}: has {len(panel)} bars, training with window="
                             f"{config.window} and episode_length={config.episode_length} needs "
                             f"at least {config.window + config.episode_length + 1}")
        self.params = make_portfolio_params(panel, config)

    def reset(self, key: jax.Array, params: PortfolioParams) -> tuple[jax.Array, PortfolioState]:
        if self.mode == "train":
            num_starts = params.last_step - params.first_step - self.episode_length + 1
            start = params.first_step + jax.random.randint(key, (), 0, num_starts)
            end = start + self.episode_length
        else:
            start, end = params.first_step, params.last_step
        state = PortfolioState(
            t=jnp.asarray(start, jnp.int32), end=jnp.asarray(end, jnp.int32),
            weights=jnp.zeros(self.num_instruments, jnp.float32), value=params.initial_value,
            held=jnp.zeros((self.window, self.num_instruments), jnp.float32))
        return observe(state, params), state

    def step(self, key: jax.Array, state: PortfolioState, action: jax.Array,
             params: PortfolioParams) -> tuple[jax.Array, PortfolioState, jax.Array, jax.Array, dict]:
        """(obs, state, reward, done, info) of taking `action` (int32 [N]); auto-resets."""
        next_state, reward, cost, terminated, truncated = self.transition(state, action, params)
        final_observation = observe(next_state, params)
        done = terminated | truncated
        reset_obs, reset_state = self.reset(key, params)
        new_state = jax.tree.map(lambda r, n: jnp.where(done, r, n), reset_state, next_state)
        info = {"final_observation": final_observation,
                "final_observation_ref": observation_ref(next_state, params),
                "terminated": terminated, "truncated": truncated,
                "portfolio_value": next_state.value, "position": jnp.abs(next_state.weights).sum(),
                "cost": cost, "traded": jnp.any(next_state.weights != state.weights),
                "forced_closes": jnp.sum((state.weights != 0) & ~params.can_hold[state.t]),
                "step_index": next_state.t}
        return jnp.where(done, reset_obs, final_observation), new_state, reward, done, info

    def transition(self, state: PortfolioState, action: jax.Array, params: PortfolioParams):
        """(state after the step, reward, cost, terminated, truncated), without reset."""
        return _transition(state, action, params, eval_mode=self.mode == "eval")

    def observation_ref(self, state: PortfolioState, params: PortfolioParams) -> PortfolioRef:
        return observation_ref(state, params)

    def observation_from_ref(self, ref: PortfolioRef, params: PortfolioParams) -> jax.Array:
        held = jnp.where(ref.held >= 0, params.positions[jnp.maximum(ref.held, 0)], 0.0)
        return _window(ref.t, held, params)


def _transition(state: PortfolioState, action, params: PortfolioParams, eval_mode: bool):
    can_hold = params.can_hold[state.t]
    levels = jnp.where(can_hold, params.positions[action], 0.0)
    reward, value, cost, bankrupt, weights = rebalance(
        state.value, state.weights, levels, can_hold, params.step_returns[state.t],
        params.trade_cost_rate, params.borrow_rate, jnp, params.risk_aversion)
    t = state.t + 1
    held = jnp.concatenate([state.held[1:], levels[None]])
    next_state = state._replace(t=t, weights=weights, value=value, held=held)
    at_end = t >= state.end
    terminated = (bankrupt | at_end) if eval_mode else bankrupt
    return next_state, reward, cost, terminated, at_end & ~terminated


def observe(state: PortfolioState, params: PortfolioParams) -> jax.Array:
    """float32 [N, window, F + 2]: each instrument's features at bars t - window + 1 .. t, the
    position level it held there and whether it could be held there."""
    return _window(state.t, state.held, params)


def _window(t: jax.Array, held: jax.Array, params: PortfolioParams) -> jax.Array:
    window, num = held.shape
    features = jax.lax.dynamic_slice(params.features, (t - window + 1, 0, 0),
                                     (window, num, params.features.shape[2]))  # [window, N, F]
    mask = jax.lax.dynamic_slice(params.can_hold, (t - window + 1, 0), (window, num))
    rows = jnp.concatenate([features, held[..., None], mask[..., None].astype(jnp.float32)], axis=2)
    return jnp.transpose(rows, (1, 0, 2))  # [N, window, F + 2]


def observation_ref(state: PortfolioState, params: PortfolioParams) -> PortfolioRef:
    matches = state.held[..., None] == params.positions  # [window, N, K]
    index = jnp.where(jnp.any(matches, axis=-1), jnp.argmax(matches, axis=-1), -1)
    return PortfolioRef(t=state.t, held=index.astype(jnp.int8))


def evaluate_portfolio_policy(window: int, policy: Callable[[jax.Array], jax.Array],
                              params: PortfolioParams) -> PortfolioTrace:
    """Walks the panel of `params` once, from bar `window` (its first_step) to its last, with
    `policy(obs [N, window, F + 2]) -> actions int32 [N]` (traced); jit the caller."""
    num_steps = params.features.shape[0] - 1 - window  # last_step - first_step
    num = params.features.shape[1]
    state = PortfolioState(t=params.first_step, end=params.last_step,
                           weights=jnp.zeros(num, jnp.float32), value=params.initial_value,
                           held=jnp.zeros((window, num), jnp.float32))

    def walk(carry, _):
        state, running = carry
        after, reward, _, terminated, _ = _transition(state, policy(observe(state, params)),
                                                      params, eval_mode=True)
        state = jax.tree.map(lambda new, old: jnp.where(running, new, old), after, state)
        record = (state.value, jnp.where(running, after.weights, 0.0), reward, running)
        return (state, running & ~terminated), record

    _, (values, weights, rewards, valid) = jax.lax.scan(walk, (state, jnp.bool_(True)), None,
                                                        length=num_steps)
    values = jnp.concatenate([params.initial_value[None], values])
    return PortfolioTrace(values, weights, rewards, valid)


def host_trace(trace: PortfolioTrace) -> dict[str, np.ndarray]:
    """A trace's valid steps as host arrays: portfolio_values [L + 1], weights [L, N]."""
    trace = jax.device_get(trace)
    steps = int(np.asarray(trace.valid).sum())
    return {"portfolio_values": np.asarray(trace.portfolio_values[:steps + 1], np.float64),
            "weights": np.asarray(trace.weights[:steps], np.float64)}
