"""Market data: bars and features of one market (`MarketData`), the CSV readers and their cache,
synthetic processes, and where a run's markets come from with their train / validation / test
split or walk-forward folds (`MarketSource`). Imports nothing of environments.envs or .evaluation."""
