"""Every env of a run from one value: where its markets come from (a MarketSource) and one
EnvConfig. Small and picklable, so each process of a distributed run builds its own envs from
it, and the envs of every part and launch type share one config."""

from __future__ import annotations

import dataclasses

from environments.data.market import MarketData
from environments.data.universe import MarketSource
from environments.envs.config import EnvConfig
from environments.envs.trading import TradingEnv, TradingSetup, make_setup
from environments.envs.vector import TradingVectorEnv

EVAL_PARTS = ("validation", "test")


@dataclasses.dataclass(frozen=True)
class EnvFactory:
    """The training envs (the train part, a universe, in mode "train") and the evaluation envs
    (one per market of the validation or test part, in mode "eval") of a run."""

    source: MarketSource
    config: EnvConfig

    def markets(self, part: str) -> tuple[MarketData, ...]:
        """The markets of `part` ("train", "validation" or "test"), loaded once per process."""
        return self.source.split(part)

    def train_setup(self) -> TradingSetup:
        """The training markets laid end to end, for JaxTradingEnv."""
        return make_setup(self.markets("train"), self.config, mode="train")

    def jax_train_env(self):
        """The jittable training env (environments.envs.jittable: imports jax)."""
        from environments.envs.jittable import JaxTradingEnv

        return JaxTradingEnv(self.train_setup())

    def train_vector(self, num_envs: int) -> TradingVectorEnv:
        """`num_envs` training envs stepped together (an actor's batch)."""
        return TradingVectorEnv.from_config(self.markets("train"), self.config, num_envs, mode="train")

    def eval_setups(self, part: str) -> list[TradingSetup]:
        """One eval setup per market of `part`, for JaxTradingEnv's evaluation walk."""
        return [make_setup(market, self.config, mode="eval") for market in self._eval_markets(part)]

    def eval_envs(self, part: str) -> list[TradingEnv]:
        """One eval env per market of `part`: each walks its market once."""
        return [TradingEnv.from_config(market, self.config, mode="eval")
                for market in self._eval_markets(part)]

    def _eval_markets(self, part: str) -> tuple[MarketData, ...]:
        if part not in EVAL_PARTS:
            raise ValueError(f"evaluation envs are made for {EVAL_PARTS}, got part {part!r}")
        return self.markets(part)
