"""Tests for the One-Euro filter and gap filling (export3d_cli.face.temporal).

The filter is checked against straightforward scalar loops written from the paper's pseudocode, and against
closed forms of a first-order low-pass (step response, noise variance) for ``beta = 0``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from export3d_cli.face.temporal import OneEuroConfig, fill_gaps, one_euro_filter


def smoothing_factor(cutoff: float, fps: float) -> float:
    tau = 1.0 / (2.0 * math.pi * cutoff)
    return 1.0 / (1.0 + tau * fps)


def low_pass_loop(x: np.ndarray, alpha: float) -> np.ndarray:
    """First-order low-pass of a 1-D signal, one sample at a time."""
    out = [float(x[0])]
    for sample in x[1:]:
        out.append(out[-1] + alpha * (float(sample) - out[-1]))
    return np.array(out)


def one_euro_reference(x: np.ndarray, rates: list[float], config: OneEuroConfig) -> np.ndarray:
    """Scalar One-Euro filter of a 1-D signal, following Casiez et al. (2012), Algorithm 1; ``rates[t]`` is
    1 / (time of sample t+1 − time of sample t)."""
    x_hat = float(x[0])
    dx_hat = 0.0
    out = [x_hat]
    for sample, rate in zip(x[1:], rates, strict=True):
        dx = (float(sample) - x_hat) * rate
        dx_hat += smoothing_factor(config.d_cutoff, rate) * (dx - dx_hat)
        cutoff = config.min_cutoff + config.beta * abs(dx_hat)
        x_hat += smoothing_factor(cutoff, rate) * (float(sample) - x_hat)
        out.append(x_hat)
    return np.array(out)


def one_euro_loop(x: np.ndarray, fps: float, config: OneEuroConfig) -> np.ndarray:
    return one_euro_reference(x, [fps] * (len(x) - 1), config)


# --- one_euro_filter ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("beta", [0.0, 2.0])
def test_constant_signal_passes_unchanged(beta):
    values = np.tile(np.array([[1.5, -3.0, 0.0]]), (50, 1))
    np.testing.assert_array_equal(one_euro_filter(values, 30.0, OneEuroConfig(beta=beta)), values)


def test_beta_zero_is_a_first_order_low_pass():
    rng = np.random.default_rng(0)
    values = rng.normal(size=(200, 3))
    config = OneEuroConfig(min_cutoff=2.0, beta=0.0)
    alpha = smoothing_factor(2.0, 25.0)
    expected = np.stack([low_pass_loop(values[:, d], alpha) for d in range(3)], axis=1)
    np.testing.assert_allclose(one_euro_filter(values, 25.0, config), expected, rtol=1e-12, atol=1e-12)


def test_matches_the_papers_algorithm_with_speed_adaptation():
    rng = np.random.default_rng(1)
    values = np.cumsum(rng.normal(size=(300, 4)), axis=0) + rng.normal(scale=0.3, size=(300, 4))
    config = OneEuroConfig(min_cutoff=0.8, beta=0.7, d_cutoff=1.5)
    expected = np.stack([one_euro_loop(values[:, d], 30.0, config) for d in range(4)], axis=1)
    np.testing.assert_allclose(one_euro_filter(values, 30.0, config), expected, rtol=1e-12, atol=1e-12)


def one_euro_loop_timed(x: np.ndarray, times: np.ndarray, config: OneEuroConfig) -> np.ndarray:
    """Algorithm 1 with each sample's own interval (the paper's filter takes a timestamp per sample)."""
    return one_euro_reference(x, list(1.0 / np.diff(times)), config)


def test_timed_samples_follow_the_papers_algorithm_with_each_interval():
    rng = np.random.default_rng(2)
    times = np.cumsum(rng.uniform(0.01, 0.12, size=120))
    values = np.cumsum(rng.normal(size=(120, 3)), axis=0)
    config = OneEuroConfig(min_cutoff=0.8, beta=0.7, d_cutoff=1.5)
    expected = np.stack([one_euro_loop_timed(values[:, d], times, config) for d in range(3)], axis=1)
    np.testing.assert_allclose(one_euro_filter(values, 25.0, config, times), expected, rtol=1e-12, atol=1e-12)


def test_evenly_spaced_times_filter_exactly_like_the_rate():
    values = np.cumsum(np.random.default_rng(3).normal(size=(80, 2)), axis=0)
    config = OneEuroConfig(min_cutoff=1.0, beta=2.0)
    timed = one_euro_filter(values, 30.0, config, 5.0 + np.arange(80) / 30.0)
    np.testing.assert_allclose(timed, one_euro_filter(values, 30.0, config), rtol=1e-9, atol=1e-12)


def test_a_sample_after_a_stall_moves_most_of_the_way_to_its_value():
    values = np.array([[0.0], [0.0], [1.0]])
    config = OneEuroConfig(min_cutoff=1.0, beta=0.0)
    at_rate = one_euro_filter(values, 25.0, config)[-1, 0]
    after_stall = one_euro_filter(values, 25.0, config, np.array([0.0, 0.04, 2.04]))[-1, 0]
    assert at_rate == pytest.approx(smoothing_factor(1.0, 25.0))  # 0.2: one 40 ms step
    assert after_stall == pytest.approx(smoothing_factor(1.0, 1 / 2.0))  # 0.93: one 2 s step


@pytest.mark.parametrize("times", [np.array([0.0, 0.1]), np.array([0.0, 0.1, 0.1]), np.array([0.0, np.nan, 1.0])])
def test_bad_times_are_refused(times):
    with pytest.raises(ValueError, match="times must be 3 finite"):
        one_euro_filter(np.zeros((3, 1)), 25.0, OneEuroConfig(), times)


def test_step_response_settles_as_the_cutoff_predicts():
    fps, cutoff = 30.0, 1.0
    values = np.ones((60, 1))
    values[0] = 0.0
    out = one_euro_filter(values, fps, OneEuroConfig(min_cutoff=cutoff))[:, 0]
    alpha = smoothing_factor(cutoff, fps)
    frames = math.ceil(math.log(0.05) / math.log(1 - alpha))  # from 1 - (1 - alpha)^n >= 0.95
    assert np.argmax(out >= 0.95) == frames
    # Continuous first-order systems reach 95 % after about 3 time constants.
    tau = 1.0 / (2.0 * math.pi * cutoff)
    assert 2.5 * tau <= frames / fps <= 4.0 * tau


def test_higher_beta_lags_less_on_a_fast_ramp():
    fps = 30.0
    ramp = (np.arange(120) / fps * 50.0)[:, None]  # 50 units per second
    lag = {
        beta: np.abs(one_euro_filter(ramp, fps, OneEuroConfig(beta=beta)) - ramp)[60:].mean() for beta in (0.0, 0.05)
    }
    assert lag[0.05] < 0.5 * lag[0.0]


def test_noise_variance_drops_by_the_low_pass_factor():
    fps, cutoff = 30.0, 1.0
    noise = np.random.default_rng(2).normal(size=(20_000, 4))
    out = one_euro_filter(5.0 + noise, fps, OneEuroConfig(min_cutoff=cutoff))
    alpha = smoothing_factor(cutoff, fps)
    expected_ratio = alpha / (2.0 - alpha)  # variance of an exponential moving average of white noise
    ratio = out[100:].var(axis=0) / noise.var(axis=0)
    np.testing.assert_allclose(ratio, expected_ratio, rtol=0.15)


def test_empty_and_single_frame():
    empty = one_euro_filter(np.zeros((0, 3), dtype=np.float32), 25.0, OneEuroConfig())
    assert empty.shape == (0, 3)
    assert empty.dtype == np.float32
    single = np.array([[1.0, 2.0]])
    np.testing.assert_array_equal(one_euro_filter(single, 25.0, OneEuroConfig(beta=1.0)), single)


@pytest.mark.parametrize(("dtype", "expected"), [(np.float32, np.float32), (np.float64, np.float64), (int, np.float64)])
def test_output_dtype(dtype, expected):
    values = np.arange(20).reshape(10, 2).astype(dtype)
    out = one_euro_filter(values, 25.0, OneEuroConfig())
    assert out.dtype == expected
    assert out.shape == (10, 2)


@pytest.mark.parametrize(
    ("values", "fps", "config", "message"),
    [
        (np.zeros(5), 25.0, OneEuroConfig(), r"\[T, D\]"),
        (np.zeros((5, 2)), 0.0, OneEuroConfig(), "fps"),
        (np.zeros((5, 2)), 25.0, OneEuroConfig(min_cutoff=0.0), "min_cutoff"),
        (np.zeros((5, 2)), 25.0, OneEuroConfig(beta=-1.0), "beta"),
        (np.array([[0.0], [np.nan]]), 25.0, OneEuroConfig(), "NaN"),
    ],
)
def test_filter_rejects_bad_input(values, fps, config, message):
    with pytest.raises(ValueError, match=message):
        one_euro_filter(values, fps, config)


# --- fill_gaps ---------------------------------------------------------------------------------------------------


def test_gaps_are_interpolated_and_ends_held():
    nan = np.nan
    values = np.array([[nan, nan], [1, 10], [nan, 0], [0, nan], [4, 40], [7, 7], [nan, nan]], dtype=np.float64)
    valid = np.array([False, True, False, False, True, False, False])
    expected = np.array([[1, 10], [1, 10], [2, 20], [3, 30], [4, 40], [4, 40], [4, 40]], dtype=np.float64)
    np.testing.assert_array_equal(fill_gaps(values, valid), expected)


def test_single_valid_row_fills_everything():
    values = np.zeros((4, 2))
    values[2] = [5.0, -1.0]
    out = fill_gaps(values, np.array([False, False, True, False]))
    np.testing.assert_array_equal(out, np.tile([5.0, -1.0], (4, 1)))


def test_all_valid_is_an_unchanged_copy():
    values = np.random.default_rng(3).normal(size=(6, 3)).astype(np.float32)
    out = fill_gaps(values, np.ones(6, dtype=bool))
    np.testing.assert_array_equal(out, values)
    assert out is not values
    assert out.dtype == np.float32


def test_all_invalid_raises():
    with pytest.raises(ValueError, match="no valid rows"):
        fill_gaps(np.zeros((3, 2)), np.zeros(3, dtype=bool))


def test_empty_input_is_returned_empty():
    out = fill_gaps(np.zeros((0, 2), dtype=np.float32), np.zeros(0, dtype=bool))
    assert out.shape == (0, 2)
    assert out.dtype == np.float32


@pytest.mark.parametrize(("dtype", "expected"), [(np.float32, np.float32), (np.float16, np.float16), (int, np.float64)])
def test_fill_dtype(dtype, expected):
    values = np.array([[0], [0], [3]]).astype(dtype)
    out = fill_gaps(values, np.array([True, False, True]))
    assert out.dtype == expected
    np.testing.assert_array_equal(out, np.array([[0], [1.5], [3]], dtype=expected))


@pytest.mark.parametrize(
    ("values", "valid"),
    [
        (np.zeros(3), np.ones(3, dtype=bool)),
        (np.zeros((3, 2)), np.ones(4, dtype=bool)),
        (np.zeros((3, 2)), np.ones(3, dtype=int)),
    ],
)
def test_fill_rejects_bad_shapes(values, valid):
    with pytest.raises(ValueError):
        fill_gaps(values, valid)
