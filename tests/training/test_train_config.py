"""The training configuration's learning-rate schedule and the settings a checkpoint may be resumed with."""

from __future__ import annotations

import itertools
import math

import pytest

from export3d_cli.errors import UsageError
from export3d_cli.training.train_config import (
    GENERATOR_PRESETS,
    check_resumable,
    with_overrides,
)


def _config(**overrides):
    return with_overrides(GENERATOR_PRESETS["tiny"], **overrides)


def test_constant_rate_without_annealing():
    config = _config(steps=50, lr_decay_steps=0)
    assert {config.lr_scale(step) for step in range(60)} == {1.0}


def test_half_cosine_over_the_last_steps_down_to_the_final_ratio():
    config = _config(steps=10, lr_decay_steps=4, lr_final_ratio=0.1)
    scales = [config.lr_scale(step) for step in range(10)]
    # Updates 0..5 run at the full rate; update 6 is a quarter through the window, update 9 its end.
    assert scales[:6] == [1.0] * 6
    assert scales[6] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi / 4)))
    assert scales[7] == pytest.approx(0.1 + 0.9 * 0.5)
    assert scales[9] == pytest.approx(0.1)
    assert all(a > b for a, b in itertools.pairwise(scales[5:]))
    assert config.lr_scale(25) == pytest.approx(0.1)  # past the end (a resumed, shortened run) stays at the floor


def test_annealing_longer_than_the_run_starts_at_once():
    config = _config(steps=4, lr_decay_steps=8, lr_final_ratio=0.0)
    assert config.lr_scale(0) < 1.0 and config.lr_scale(3) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("overrides", [{"lr_decay_steps": -1}, {"lr_final_ratio": 1.5}, {"lr_final_ratio": -0.1}])
def test_bad_schedules_are_usage_errors(overrides):
    with pytest.raises(UsageError):
        _config(**overrides)


def test_resuming_accepts_other_lengths_and_reporting_but_names_every_other_difference(tmp_path):
    saved = _config(steps=100)
    check_resumable(tmp_path, saved, _config(steps=300, lr_decay_steps=50, eval_every=7, checkpoint_every=9))
    with pytest.raises(UsageError, match=r"other settings \(batch_size, lr\);"):
        check_resumable(tmp_path, saved, _config(lr=saved.lr * 2, batch_size=saved.batch_size + 1))
