"""Trading environments, in three rooms: market data and universes of markets with their train /
validation / test split or walk-forward folds (environments/data/), the envs on them
(environments/envs/) and what a policy did on them (environments/evaluation/); this module
re-exports their public names.
Registers the gymnasium id "TradingEnv-v0". The jax version, JaxTradingEnv, is in
environments.envs.jittable (not imported here: numpy users do not import jax)."""

import gymnasium as gym

from environments.data.csv_loader import load_csv
from environments.data.features import FEATURE_NAMES, NUM_FEATURES, compute_features
from environments.data.folds import Fold, FoldSizes, walk_forward
from environments.data.market import MarketData, MarketDataError
from environments.data.panel import PanelData
from environments.data.panel_csv import load_panel
from environments.data.panel_source import PanelSource, PanelSplits, is_panel_source
from environments.data.synthetic import gbm_market, ou_market, regime_market, synthetic_market
from environments.data.universe import MarketSource, MarketSplits, path_seed
from environments.envs.config import EnvConfig
from environments.envs.factory import EnvFactory
from environments.envs.trading import TradingEnv
from environments.envs.vector import TradingVectorEnv
from environments.evaluation.metrics import (buy_and_hold, evaluate_with_baselines, flat,
                                             infer_periods_per_year, median_metrics, plot_equity,
                                             run_episode, run_episodes, trading_metrics)

ENV_ID = "TradingEnv-v0"
PORTFOLIO_ENV_ID = "PortfolioEnv-v0"  # gym.make(PORTFOLIO_ENV_ID, panel=PanelData, config=...)

if ENV_ID not in gym.registry:
    gym.register(id=ENV_ID, entry_point="environments.envs.trading:TradingEnv",
                 vector_entry_point="environments.envs.vector:TradingVectorEnv")
if PORTFOLIO_ENV_ID not in gym.registry:
    gym.register(id=PORTFOLIO_ENV_ID, entry_point="environments.envs.portfolio_gym:PortfolioEnv")

__all__ = [
    "ENV_ID", "EnvConfig", "EnvFactory", "FEATURE_NAMES", "Fold", "FoldSizes", "NUM_FEATURES",
    "MarketData", "MarketDataError", "MarketSource", "MarketSplits", "PORTFOLIO_ENV_ID",
    "PanelData", "PanelSource", "PanelSplits", "TradingEnv", "TradingVectorEnv", "buy_and_hold", "compute_features",
    "evaluate_with_baselines", "flat", "gbm_market", "infer_periods_per_year", "is_panel_source",
    "load_csv", "load_panel", "median_metrics", "ou_market", "path_seed", "plot_equity",
    "regime_market", "run_episode", "run_episodes", "synthetic_market", "trading_metrics",
    "walk_forward",
]
