"""Every env of a portfolio run from one value, as EnvFactory is for single instruments: where its
panel comes from (a PanelSource) and one EnvConfig."""

from __future__ import annotations

import dataclasses

from environments.data.panel import PanelData
from environments.data.panel_source import PanelSource
from environments.envs.config import EnvConfig
from environments.envs.portfolio_gym import PortfolioEnv
from environments.envs.portfolio_vector import PortfolioVectorEnv

EVAL_PARTS = ("validation", "test")


@dataclasses.dataclass(frozen=True)
class PanelFactory:
    """The training env (the train part, mode "train") and the evaluation env of each part (mode
    "eval": one walk of the part's panel) of a portfolio run."""

    source: PanelSource
    config: EnvConfig

    def panel(self, part: str) -> PanelData:
        """The panel of `part` ("train", "validation" or "test"), loaded once per process."""
        return self.source.split(part)

    def train_env(self) -> PortfolioEnv:
        return PortfolioEnv(self.panel("train"), self.config, mode="train")

    def train_vector(self, num_envs: int) -> PortfolioVectorEnv:
        """`num_envs` training envs stepped together (an actor's batch)."""
        return PortfolioVectorEnv(self.panel("train"), self.config, num_envs, mode="train")

    def jax_train_env(self):
        """The jittable training env (environments.envs.portfolio: imports jax)."""
        from environments.envs.portfolio import JaxPortfolioEnv

        return JaxPortfolioEnv(self.panel("train"), self.config, mode="train")

    def eval_env(self, part: str) -> PortfolioEnv:
        if part not in EVAL_PARTS:
            raise ValueError(f"evaluation envs are made for {EVAL_PARTS}, got part {part!r}")
        return PortfolioEnv(self.panel(part), self.config, mode="eval")
