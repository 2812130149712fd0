"""The one trading accounting: hand-computed costs, growth and bankruptcy, the same numbers on
python floats and numpy arrays."""

import math

import numpy as np
import pytest

from environments.envs.accounting import (LOG_MIN_GROWTH, SCALAR, account, cost_fraction, cost_table,
                                          settle)

TRADE, BORROW = 0.0015, 0.0002  # 15 bps per unit traded, 2 bps per step short


def test_cost_fraction_charges_trades_and_borrow_on_shorts_only():
    assert cost_fraction(0.0, -1.0, TRADE, BORROW) == pytest.approx(0.0015 + 0.0002, abs=1e-18)
    assert cost_fraction(-1.0, -1.0, TRADE, BORROW) == BORROW  # held short: borrow only
    assert cost_fraction(-1.0, 1.0, TRADE, BORROW) == 2 * TRADE  # long: no borrow
    assert cost_fraction(1.0, 1.0, TRADE, BORROW) == 0.0
    assert cost_fraction(0.0, -0.5, TRADE, BORROW) == pytest.approx(0.5 * 0.0017, abs=1e-18)


def test_cost_table_rows_are_from_each_level_and_the_flat_start():
    table = cost_table((-1.0, 0.0, 1.0), TRADE, BORROW)  # [K + 1, K]
    assert table.shape == (4, 3)
    np.testing.assert_allclose(table[3], [0.0017, 0.0, 0.0015], atol=1e-18)  # from flat
    np.testing.assert_allclose(table[0], [0.0002, 0.0015, 0.003], atol=1e-18)  # from short


def test_settle_on_floats_growth_reward_value_and_cost():
    # long at +10% paying 15 bps: growth 1.0985
    reward, value, cost, bankrupt = settle(2.0, 1.0, 0.1, TRADE, SCALAR)
    assert reward == pytest.approx(math.log(1.0985), rel=1e-15)
    assert value == pytest.approx(2.0 * 1.0985, rel=1e-15) and cost == pytest.approx(0.003)
    assert bankrupt is False
    # account = settle with the cost of the trade
    assert account(2.0, 0.0, 1.0, 0.1, TRADE, BORROW, SCALAR) == settle(2.0, 1.0, 0.1, TRADE,
                                                                          SCALAR)


def test_risk_aversion_takes_half_kappa_times_the_squared_change_from_the_reward_only():
    # long at +10% paying 15 bps: change 0.0985; kappa 2 takes 0.0985^2 off the log growth
    reward, value, cost, _ = settle(2.0, 1.0, 0.1, TRADE, SCALAR, risk_aversion=2.0)
    assert reward == pytest.approx(math.log(1.0985) - 0.0985 ** 2, rel=1e-15)
    assert (value, cost) == settle(2.0, 1.0, 0.1, TRADE, SCALAR)[1:3]  # the portfolio is the same
    flat = settle(2.0, 0.0, 0.1, 0.0, SCALAR, risk_aversion=2.0)  # no change: no penalty
    assert flat[0] == 0.0
    bankrupt = settle(1.0, -1.0, 1.5, 0.0, SCALAR, risk_aversion=2.0)
    assert bankrupt[0] == LOG_MIN_GROWTH  # the floor, not the floor less a penalty


def test_bankruptcy_floors_the_reward_and_zeroes_the_value():
    reward, value, _, bankrupt = settle(1.0, -1.0, 1.5, 0.0, SCALAR)  # short, price +150%
    assert bankrupt and reward == LOG_MIN_GROWTH and value == 0.0
    reward, value, _, bankrupt = settle(1.0, 1.0, -(1.0 - 1e-7), 0.0, SCALAR)  # growth 1e-7
    assert bankrupt and reward == LOG_MIN_GROWTH and value == pytest.approx(1e-7)


def test_numpy_arrays_give_the_python_float_numbers():
    rng = np.random.default_rng(0)
    values = rng.uniform(0.5, 2.0, 64)
    positions, targets = rng.choice([-1.0, 0.0, 1.0], (2, 64))
    returns = rng.normal(0.0, 0.02, 64)
    returns[:3] = [1.5, -1.2, 1.0]  # bankruptcies of shorts and longs among them
    targets[:3] = [-1.0, 1.0, -1.0]
    for kappa in (0.0, 3.0):
        arrays = account(values, positions, targets, returns, TRADE, BORROW, np, kappa)
        floats = [account(*map(float, args), TRADE, BORROW, SCALAR, kappa)
                  for args in zip(values, positions, targets, returns)]
        assert arrays[3][:3].all() and not arrays[3][3:].any()
        for i, expected in enumerate(zip(*floats)):
            np.testing.assert_allclose(arrays[i], expected, rtol=1e-15, atol=0)
