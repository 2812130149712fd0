"""A seeded synthetic panel with a known edge, and its oracle.

Each instrument's log price is a common market factor times its beta plus its own
mean-reverting component:
    log p_i(t) = log 100 + beta_i * m(t) + x_i(t),
    m(t + 1) = m(t) + drift + factor_volatility * e(t)                (a random walk)
    x_i(t + 1) = (1 - mean_reversion) * x_i(t) + volatility * e_i(t)  (Ornstein-Uhlenbeck)
The edge is x_i's reversion: E[x_i(t + 1) - x_i(t)] = -mean_reversion * x_i(t). The oracle knows
x_i (the latent components) and holds -sign(x_i) where |x_i| is beyond `band` stationary
standard deviations, flat elsewhere; seeds draw distinct panels.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from environments.data.panel import PanelData


@dataclasses.dataclass(frozen=True)
class PanelOracle:
    """What the oracle knows of a synthetic panel: its latent components and their process."""

    deviations: np.ndarray  # float64 [T, N]: x_i(t)
    mean_reversion: float
    volatility: float

    @property
    def stationary_std(self) -> float:
        """The standard deviation of x_i in its stationary state."""
        theta = self.mean_reversion
        return self.volatility / np.sqrt(theta * (2.0 - theta))

    def levels(self, band: float = 0.5) -> np.ndarray:
        """float64 [T, N]: the oracle's position level at each bar: -sign(x) beyond `band`
        stationary standard deviations, 0 inside."""
        x = self.deviations
        return np.where(np.abs(x) > band * self.stationary_std, -np.sign(x), 0.0)


def synthetic_panel(num_instruments: int = 10, num_steps: int = 4096, seed: int = 0,
                    drift: float = 0.0002, factor_volatility: float = 0.01,
                    mean_reversion: float = 0.05, volatility: float = 0.01,
                    start: str = "2000-01-03") -> tuple[PanelData, PanelOracle]:
    """A panel of `num_instruments` on `num_steps` weekday bars (module docstring), betas
    drawn in [0.5, 1.5], and its oracle; the same arguments give the same panel."""
    if num_instruments < 1 or num_steps < 2:
        raise ValueError(f"a synthetic panel needs >= 1 instrument and >= 2 steps, got "
                         f"{num_instruments} and {num_steps}")
    if not 0.0 < mean_reversion < 1.0:
        raise ValueError(f"mean_reversion must be in (0, 1), got {mean_reversion}")
    rng = np.random.default_rng(seed)
    betas = rng.uniform(0.5, 1.5, num_instruments)
    factor = np.concatenate([[0.0], np.cumsum(drift + factor_volatility
                                              * rng.standard_normal(num_steps - 1))])
    oracle = PanelOracle(np.empty((num_steps, num_instruments)), mean_reversion, volatility)
    x = oracle.stationary_std * rng.standard_normal(num_instruments)  # started stationary
    noise = volatility * rng.standard_normal((num_steps, num_instruments))
    for t in range(num_steps):  # sequential recursion, vectorized over instruments
        oracle.deviations[t] = x
        x = (1.0 - mean_reversion) * x + noise[t]
    oracle.deviations.setflags(write=False)
    close = 100.0 * np.exp(betas * factor[:, None] + oracle.deviations)
    timestamps = np.busday_offset(np.datetime64(start, "D"), np.arange(num_steps),
                                  roll="forward").astype("datetime64[ns]")
    names = tuple(f"S{i:03d}" for i in range(num_instruments))
    return PanelData(timestamps, close, names, f"synthetic:panel(seed={seed})"), oracle
