"""The report printed when a run ends: returns as percentages, over the test span in years."""

from launch.run import progress


def summary(**test):
    return {
        "stop_reason": "limit: max_seconds=240", "wall_s": 251.0, "launch_type": "local_mp",
        "num_seeds": 1, "launch": {"num_actors": 2, "actor_restarts": 0},
        "learner_steps": 21315, "learner_steps_per_s": 88.8, "env_steps": 172968,
        "env_steps_per_s": 720.7, "replay_items": 100000,
        "validation": {"learner_steps": 10579, "best_sharpe": 1.88},
        "test": {"num_markets": 8, "sharpe": 1.82, "buy_and_hold_sharpe": 0.08, **test},
        "annualization": "252 (daily bars on trading days) periods per year", "workdir": "/runs/x",
    }


def test_returns_and_drawdowns_are_percentages_over_the_years_tested():
    report = progress.final_report(summary(total_return=53.0129, max_drawdown=0.0987,
                                           buy_and_hold_return=0.008, years=4096 / 252))
    assert ("test (the median of 8 test markets, once): total return +5,301.3% over 16.3 years, "
            "sharpe 1.82, max drawdown 9.9% (buy and hold: return +0.8%, sharpe 0.08)") in report
    assert "learner steps 21,315 (88.8/s)" in report and "[local_mp, 2 actors]" in report


def test_a_losing_run_and_seeds_read_as_such():
    losing = summary(total_return=-0.052, max_drawdown=0.31, buy_and_hold_return=-0.5, years=None)
    losing.update(launch_type="anakin", num_seeds=2, replay_items=None, launch={"num_devices": 1},
                  validation={"learner_steps": 30, "best_sharpe": 0.4,
                              "learner_steps_by_seed": [30, 10], "best_sharpe_by_seed": [0.5, 0.3]})
    losing["test"]["sharpe_by_seed"] = [0.1, 0.3]
    report = progress.final_report(losing)
    assert "total return -5.2%, sharpe" in report and "return -50.0%" in report
    assert "[anakin, 2 seeds]" in report and "replay items -" in report
    assert "each seed on its own: learner steps [30, 10] (validation sharpe 0.50, 0.30" in report
    assert "the median of 8 test markets, the median of 2 seeds" in report


def test_a_portfolio_is_reported_next_to_its_basket_and_one_over_n():
    report = progress.final_report(summary(
        num_markets=1, total_return=0.12, max_drawdown=0.05, buy_and_hold_return=0.04, years=1.0,
        equal_weight_sharpe=0.49, equal_weight_return=0.031))
    assert ("max drawdown 5.0% (the basket bought and held: return +4.0%, sharpe 0.08; "
            "1/N: return +3.1%, sharpe 0.49)") in report


def test_a_sweep_reads_as_its_members():
    swept = summary(total_return=0.1, max_drawdown=0.05, buy_and_hold_return=0.0, years=1.0)
    swept.update(launch_type="anakin", num_seeds=4, launch={"num_devices": 1},
                 sweep={"num_members": 64, "num_settings": 16})
    assert "[anakin, 64 members: 16 settings x 4 seeds]" in progress.final_report(swept)
