"""JaxTradingEnv: TradingEnv as pure jax functions (gymnax style), built from the same
TradingSetup and settled by the same environments.envs.accounting in float32, so a whole training
loop compiles; evaluate_policy walks eval markets in one lax.scan."""

from __future__ import annotations

from typing import Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from environments.envs.accounting import cost_fraction, settle
from environments.data.features import NUM_FEATURES
from environments.envs.trading import TradingSetup


class EnvParams(NamedTuple):
    """A setup's data as jax arrays (a pytree: a jit argument, or vmapped over markets when
    stacked by `eval_params`). Bar indices are global over the markets laid end to end."""

    features: jax.Array  # float32 [T, F]: the markets' features end to end
    step_returns: jax.Array  # float32 [T]: close[t+1] / close[t] - 1, 0 at each market's end
    positions: jax.Array  # float32 [K]: target position per action
    first_steps: jax.Array  # int32 [M]: first bar an episode may start at in each market
    last_steps: jax.Array  # int32 [M]: each market's final bar (no action is taken there)
    start_counts: jax.Array  # int32 [M + 1]: cumulative number of training start bars
    trade_cost_rate: jax.Array  # float32 []: (commission + half-spread) per unit traded
    borrow_rate: jax.Array  # float32 []: per step, per unit of short notional
    initial_value: jax.Array  # float32 []
    risk_aversion: jax.Array  # float32 []: kappa of the reward's variance penalty


class EnvState(NamedTuple):
    """One episode's state (jax scalars and one [window] array)."""

    t: jax.Array  # int32 []: the current bar (global)
    end: jax.Array  # int32 []: the bar at which the episode ends
    market_index: jax.Array  # int32 []: the episode's market
    position: jax.Array  # float32 []: the position held at bar t
    value: jax.Array  # float32 []: the portfolio value at bar t
    held: jax.Array  # float32 [window]: position held at bars t - window + 1 .. t (0 before
    #                  the episode's start): the observation's last column


class ObservationRef(NamedTuple):
    """An observation by reference, for replays that hold many: `observation_from_ref` rebuilds
    it exactly from the features in EnvParams. A few bytes per bar of the window, not 4 (F + 1)."""

    t: jax.Array  # int32 []: the bar
    held: jax.Array  # int8 [window] (int32 past 127 positions): index into params.positions of
    #                  the position held at each bar of the window, -1 where flat before the start


class EvalTrace(NamedTuple):
    """What `evaluate_policy` records of M markets walked L steps (L: the longest walk)."""

    portfolio_values: jax.Array  # float32 [M, L + 1]: before the first step, then after each
    positions: jax.Array  # float32 [M, L]: the position held over each step
    rewards: jax.Array  # float32 [M, L]
    valid: jax.Array  # bool [M, L]: False past a market's end (or its bankruptcy): padding


def make_params(setup: TradingSetup) -> EnvParams:
    """The EnvParams (device arrays) of `setup`."""
    return EnvParams(**{name: jnp.asarray(value) for name, value in _host_params(setup).items()})


def _host_params(setup: TradingSetup) -> dict[str, np.ndarray]:
    return dict(
        features=np.asarray(setup.features, dtype=np.float32),
        step_returns=setup.step_returns.astype(np.float32),
        positions=setup.positions.astype(np.float32),
        first_steps=setup.first_steps.astype(np.int32),
        last_steps=setup.last_steps.astype(np.int32),
        start_counts=setup.start_counts.astype(np.int32),
        trade_cost_rate=np.float32(setup.trade_cost_rate),
        borrow_rate=np.float32(setup.borrow_rate),
        initial_value=np.float32(setup.initial_value),
        risk_aversion=np.float32(setup.risk_aversion),
    )


class JaxTradingEnv:
    """TradingEnv's episodes as pure functions of (key, state, action, params).

    Static part (Python values, fixed at trace time): window, episode_length, mode,
    observation_shape (window, NUM_FEATURES + 1) and num_actions; the data is `params`
    (EnvParams, built from the setup). Observation: float32 [window, F + 1], row k the
    features of bar t - window + 1 + k then the position held at that bar, as TradingEnv's.

    mode="train": reset draws the market and start bar uniformly over every (market, start
    bar) pair, as TradingSetup.starts; an episode is `episode_length` steps, then truncated.
    mode="eval": reset starts at the first valid bar of the (only) market, and the episode
    terminates at its last bar. In both, bankruptcy terminates, and `step` AUTO-RESETS an
    episode that ended (with its key): `obs` is then the new episode's first observation and
    info["final_observation"] the ended episode's last one (what a truncated episode
    bootstraps from). info, always: "final_observation" (== obs when not done), "terminated",
    "truncated" (bool []), "portfolio_value", "position" (now held), "cost" (paid this step,
    in portfolio currency), "traded", "step_index" (bar reached), "market_index", all of the
    step that was taken, before any reset. reward: float32 [] log growth (LOG_MIN_GROWTH on
    bankruptcy).
    """

    def __init__(self, setup: TradingSetup):
        self.setup = setup
        self.window = setup.window
        self.episode_length = setup.episode_length
        self.mode = setup.mode
        self.num_actions = len(setup.positions)
        self.observation_shape = (setup.window, NUM_FEATURES + 1)
        self.params = make_params(setup)

    # -- reset
    def reset(self, key: jax.Array, params: EnvParams) -> tuple[jax.Array, EnvState]:
        """(obs float32 [window, F + 1], state) of a new episode (train: its start from `key`)."""
        if self.mode == "train":
            start_number = jax.random.randint(key, (), 0, params.start_counts[-1])
            return self.reset_to(start_number, params)
        state = self._start(params, jnp.int32(0), params.first_steps[0], params.last_steps[0])
        return observe(state, params), state

    def reset_to(self, start_number: jax.Array, params: EnvParams) -> tuple[jax.Array, EnvState]:
        """A training episode at (market, start bar) pair number `start_number`, in [0,
        num_starts), numbered as TradingSetup.starts numbers them (market by market)."""
        start_number = jnp.asarray(start_number, dtype=jnp.int32)
        market = jnp.searchsorted(params.start_counts, start_number, side="right") - 1
        market = market.astype(jnp.int32)
        start = params.first_steps[market] + start_number - params.start_counts[market]
        state = self._start(params, market, start, start + self.episode_length)
        return observe(state, params), state

    def _start(self, params: EnvParams, market, start, end) -> EnvState:
        return EnvState(t=jnp.asarray(start, jnp.int32), end=jnp.asarray(end, jnp.int32),
                        market_index=jnp.asarray(market, jnp.int32),
                        position=jnp.float32(0.0), value=params.initial_value,
                        held=jnp.zeros(self.window, jnp.float32))

    # -- step
    def step(self, key: jax.Array, state: EnvState, action: jax.Array, params: EnvParams
             ) -> tuple[jax.Array, EnvState, jax.Array, jax.Array, dict]:
        """(obs, state, reward, done, info) of taking `action` (int32 []); auto-resets."""
        next_state, reward, cost, terminated, truncated = self.transition(state, action, params)
        final_observation = observe(next_state, params)
        done = terminated | truncated
        reset_obs, reset_state = self.reset(key, params)
        new_state = jax.tree_util.tree_map(lambda r, n: jnp.where(done, r, n),
                                           reset_state, next_state)
        obs = jnp.where(done, reset_obs, final_observation)
        info = {"final_observation": final_observation,
                "final_observation_ref": observation_ref(next_state, params), "terminated": terminated,
                "truncated": truncated, "portfolio_value": next_state.value,
                "position": next_state.position, "cost": cost,
                "traded": next_state.position != state.position, "step_index": next_state.t,
                "market_index": state.market_index}
        return obs, new_state, reward, done, info

    def observation_ref(self, state: EnvState, params: EnvParams) -> ObservationRef:
        """The observation `state` shows, by reference (see ObservationRef)."""
        return observation_ref(state, params)

    def observation_from_ref(self, ref: ObservationRef, params: EnvParams) -> jax.Array:
        """The observation float32 [window, F + 1] that `ref` stands for (== observe(state))."""
        return _window(ref.t, jnp.where(ref.held >= 0, params.positions[jnp.maximum(ref.held, 0)], 0.0), params)

    def transition(self, state: EnvState, action: jax.Array, params: EnvParams
                   ) -> tuple[EnvState, jax.Array, jax.Array, jax.Array, jax.Array]:
        """(state after the step, reward, cost, terminated, truncated), without reset."""
        return _transition(state, action, params, eval_mode=self.mode == "eval")


def _transition(state: EnvState, action, params: EnvParams, eval_mode: bool):
    target = params.positions[action]
    fraction = cost_fraction(state.position, target, params.trade_cost_rate, params.borrow_rate)
    reward, value, cost, bankrupt = settle(state.value, target, params.step_returns[state.t],
                                           fraction, jnp, params.risk_aversion)
    t = state.t + 1
    held = jnp.concatenate([state.held[1:], target[None]])  # position held at bar t + 1
    next_state = state._replace(t=t, position=target, value=value, held=held)
    at_end = t >= state.end
    terminated = (bankrupt | at_end) if eval_mode else bankrupt
    truncated = at_end & ~terminated
    return next_state, reward, cost, terminated, truncated


def observe(state: EnvState, params: EnvParams) -> jax.Array:
    """float32 [window, F + 1]: the features of bars t - window + 1 .. t, each with the
    position held at that bar."""
    return _window(state.t, state.held, params)


def _window(t: jax.Array, held: jax.Array, params: EnvParams) -> jax.Array:
    window = held.shape[0]
    features = jax.lax.dynamic_slice(params.features, (t - window + 1, 0),
                                     (window, params.features.shape[1]))  # [window, F]
    return jnp.concatenate([features, held[:, None]], axis=1)


def observation_ref(state: EnvState, params: EnvParams) -> ObservationRef:
    """`state`'s observation by reference: its bar, and each held position as the index of the
    first equal entry of params.positions (held positions are always one of them, or 0 before
    the episode's start)."""
    matches = state.held[:, None] == params.positions[None, :]  # [window, K]
    index = jnp.where(jnp.any(matches, axis=1), jnp.argmax(matches, axis=1), -1)
    small = params.positions.shape[-1] <= np.iinfo(np.int8).max
    return ObservationRef(t=state.t, held=index.astype(jnp.int8 if small else jnp.int32))


# ----------------------------------------------------------------------------- evaluation


def eval_params(setups: Sequence[TradingSetup]) -> EnvParams:
    """The EnvParams of M eval setups (one market each, same window and number of
    positions), stacked with a leading [M] axis; markets are padded to the longest (features
    and returns with zeros; a market's own first and last steps say where it ends)."""
    if not setups:
        raise ValueError("eval_params needs at least one setup")
    for setup in setups:
        if len(setup.markets) != 1:
            raise ValueError(f"eval_params takes one-market setups (mode='eval'), got one of "
                             f"{len(setup.markets)} markets")
        if setup.window != setups[0].window or len(setup.positions) != len(setups[0].positions):
            raise ValueError(f"eval setups must share window and number of positions: got "
                             f"window {setup.window} with {len(setup.positions)} positions, "
                             f"expected {setups[0].window} with {len(setups[0].positions)}")
    hosts = [_host_params(setup) for setup in setups]
    length = max(len(host["step_returns"]) for host in hosts)  # T of the longest market

    def padded(array: np.ndarray) -> np.ndarray:
        pad = [(0, length - len(array))] + [(0, 0)] * (array.ndim - 1)
        return np.pad(array, pad)

    stacked = {}
    for name in EnvParams._fields:
        values = [host[name] for host in hosts]
        if name in ("features", "step_returns"):
            values = [padded(value) for value in values]
        stacked[name] = jnp.asarray(np.stack(values))  # [M, ...]
    return EnvParams(**stacked)


def evaluate_policy(env_or_window: JaxTradingEnv | int, policy: Callable[[jax.Array], jax.Array],
                    params: EnvParams) -> EvalTrace:
    """Walks each of the M markets of `params` (from `eval_params`) once, from its first
    valid bar to its last (or its bankruptcy), as TradingEnv does in mode="eval": one
    lax.scan over the longest walk, the env vmapped over markets, `policy(obs [M, window,
    F + 1]) -> actions int32 [M]` called once per step on all markets (traced: a jax
    function). Padding steps past a market's end are invalid and leave it unchanged.
    Jit it (with the policy closed over, or its parameters an argument of the caller).
    """
    window = getattr(env_or_window, "window", env_or_window)
    num_steps = params.features.shape[-2] - 1 - window  # the longest walk: last - first bars

    def start(one: EnvParams) -> EnvState:
        return EnvState(t=one.first_steps[0], end=one.last_steps[0], market_index=jnp.int32(0),
                        position=jnp.float32(0.0), value=one.initial_value,
                        held=jnp.zeros(window, jnp.float32))

    def transition(state, action, one):
        return _transition(state, action, one, eval_mode=True)

    states = jax.vmap(start)(params)  # [M] each
    running = jnp.ones(params.first_steps.shape[0], dtype=bool)  # [M]

    def walk(carry, _):
        states, running = carry
        actions = policy(jax.vmap(observe)(states, params)).astype(jnp.int32)  # [M]
        after, rewards, _, terminated, truncated = jax.vmap(transition)(states, actions, params)
        states = jax.tree_util.tree_map(
            lambda new, old: jnp.where(running.reshape((-1,) + (1,) * (new.ndim - 1)), new, old),
            after, states)
        record = (states.value, jnp.where(running, after.position, 0.0),
                  jnp.where(running, rewards, 0.0), running)
        return (states, running & ~(terminated | truncated)), record

    _, (values, positions, rewards, valid) = jax.lax.scan(walk, (states, running), None,
                                                          length=num_steps)  # [L, M] each
    initial = jnp.broadcast_to(params.initial_value, values.shape[1:])[:, None]  # [M, 1]
    return EvalTrace(portfolio_values=jnp.concatenate([initial, values.T], axis=1),
                     positions=positions.T, rewards=rewards.T, valid=valid.T)
