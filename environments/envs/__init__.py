"""The trading environments on market data: one accounting of a step's costs and growth
(accounting.py), the typed settings every env is built from (config.py), TradingEnv
(gymnasium), TradingVectorEnv (numpy-batched) and JaxTradingEnv (pure jax functions)."""
