"""Seeded synthetic markets: geometric Brownian motion, Ornstein-Uhlenbeck and a
regime-switching trend, as OHLCV bars (`MarketData`); same seed, same series."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from environments.data.market import MarketData


def _bars_from_log_close(log_close: np.ndarray, rng: np.random.Generator, bar_volatility: float,
                         source: str, start: str = "2000-01-03") -> MarketData:
    """Builds OHLCV bars around a log-close path: open = previous close, high/low beyond
    both by a half-normal wick, volume log-normal and larger on big moves."""
    num_steps = len(log_close)
    close = np.exp(log_close)
    open_ = np.empty(num_steps)
    open_[0] = close[0]
    open_[1:] = close[:-1]
    wick = np.abs(rng.standard_normal((2, num_steps))) * (0.5 * bar_volatility)
    high = np.maximum(open_, close) * np.exp(wick[0])
    low = np.minimum(open_, close) * np.exp(-wick[1])
    move = np.abs(np.diff(log_close, prepend=log_close[0])) / max(bar_volatility, 1e-12)
    volume = np.round(1e6 * np.exp(0.3 * rng.standard_normal(num_steps) + 0.2 * move))
    timestamps = np.busday_offset(np.datetime64(start, "D"), np.arange(num_steps),
                                  roll="forward").astype("datetime64[ns]")
    return MarketData(timestamps, open_, high, low, close, volume, source=source)


def gbm_market(num_steps: int = 4096, seed: int = 0, drift: float = 0.0002,
               volatility: float = 0.01, start_price: float = 100.0) -> MarketData:
    """Geometric Brownian motion: log-returns ~ N(drift - volatility^2/2, volatility^2)."""
    rng = np.random.default_rng(seed)
    steps = (drift - 0.5 * volatility**2) + volatility * rng.standard_normal(num_steps - 1)
    log_close = np.log(start_price) + np.concatenate([[0.0], np.cumsum(steps)])
    return _bars_from_log_close(log_close, rng, volatility, f"synthetic:gbm(seed={seed})")


def ou_market(num_steps: int = 4096, seed: int = 0, mean_reversion: float = 0.05,
              volatility: float = 0.01, mean_price: float = 100.0) -> MarketData:
    """Ornstein-Uhlenbeck on the log price: x' = x + mean_reversion * (log mean - x) + vol * N."""
    rng = np.random.default_rng(seed)
    noise = volatility * rng.standard_normal(num_steps)
    log_mean = np.log(mean_price)
    log_close = np.empty(num_steps)
    x = log_mean
    for i in range(num_steps):  # sequential recursion; synthetic markets are built once
        log_close[i] = x
        x = x + mean_reversion * (log_mean - x) + noise[i]
    return _bars_from_log_close(log_close, rng, volatility, f"synthetic:ou(seed={seed})")


def regime_market(num_steps: int = 4096, seed: int = 0,
                  drifts: Sequence[float] = (-0.002, 0.0, 0.002), switch_probability: float = 0.02,
                  volatility: float = 0.01, start_price: float = 100.0) -> MarketData:
    """Regime-switching trend: a Markov chain over `drifts` (leaving the current regime with
    `switch_probability` per step, to a uniformly chosen other one) sets each step's mean
    log-return; noise is N(0, volatility^2)."""
    rng = np.random.default_rng(seed)
    drifts = np.asarray(drifts, dtype=np.float64)
    switches = rng.random(num_steps) < switch_probability
    jumps = rng.integers(1, len(drifts), size=num_steps) if len(drifts) > 1 else np.zeros(
        num_steps, dtype=np.int64)
    regime = np.cumsum(np.where(switches, jumps, 0)) % len(drifts)
    regime = (regime + rng.integers(len(drifts))) % len(drifts)
    steps = drifts[regime[1:]] + volatility * rng.standard_normal(num_steps - 1)
    log_close = np.log(start_price) + np.concatenate([[0.0], np.cumsum(steps)])
    return _bars_from_log_close(log_close, rng, volatility, f"synthetic:regime(seed={seed})")


SYNTHETIC_MARKETS = {"gbm": gbm_market, "ou": ou_market, "regime": regime_market}


def synthetic_market(kind: str = "ou", num_steps: int = 4096, seed: int = 0,
                     **params) -> MarketData:
    """A seeded synthetic market of `kind` in {"gbm", "ou", "regime"}; same seed, same series."""
    if kind not in SYNTHETIC_MARKETS:
        raise ValueError(f"unknown synthetic market kind {kind!r}, expected one of "
                         f"{sorted(SYNTHETIC_MARKETS)}")
    if num_steps < 2:
        raise ValueError(f"synthetic market num_steps must be >= 2, got {num_steps}")
    return SYNTHETIC_MARKETS[kind](num_steps=num_steps, seed=seed, **params)
