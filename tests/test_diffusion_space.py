"""The model-free rounding accuracy of a diffusion space (pipeline/diffusion/space.py) against a hand-computed case."""
import math

import pytest
import torch

from pipeline.diffusion.schedule import Schedule
from pipeline.diffusion.space import norm_by_frequency, rounding_accuracy


def test_two_points_on_a_line_are_told_apart_as_the_normal_cdf_says():
    """Embeddings -1 and +1 in one dimension: x_t = sqrt(a) e + sqrt(1 - a) eps is decoded to the sign of x_t, right
    with probability Phi(sqrt(a / (1 - a)))."""
    schedule = Schedule(2000)
    tokens = torch.randint(0, 2, (40000,), generator=torch.Generator().manual_seed(0))
    steps = [1, 500, 1500, 1990]
    out = rounding_accuracy(torch.tensor([[-1.0], [1.0]]), tokens, schedule, steps, seed=1)
    for step in steps:
        a = float(schedule.alpha_bar[step])
        expected = 0.5 * (1 + math.erf(math.sqrt(a / (1 - a)) / math.sqrt(2)))
        assert out[step] == pytest.approx(expected, abs=0.01)
    assert out[1] == 1.0 and out[1990] < 0.6


def test_a_far_away_point_never_wins_a_tie_it_should_not():
    """The decoder weighs the norms: a token with a long embedding is not picked for a short one's noised point
    (a bias-free dot product would pick it)."""
    e = torch.tensor([[1.0, 0.0], [10.0, 0.0]])
    out = rounding_accuracy(e, torch.zeros(1000, dtype=torch.long), Schedule(2000), [1], seed=0)
    assert out[1] == 1.0


def test_norms_are_averaged_within_each_count_bin():
    rows = torch.tensor([[3.0, 4.0], [0.0, 1.0], [0.0, 3.0], [6.0, 8.0]])  # norms 5, 1, 3, 10
    counts = torch.tensor([0, 5, 7, 20000])
    assert norm_by_frequency(rows, counts) == [
        {"counts": "0-1", "tokens": 1, "mean_norm": 5.0, "std_norm": 0.0},
        {"counts": "1-10", "tokens": 2, "mean_norm": 2.0, "std_norm": round(2 ** 0.5, 3)},
        {"counts": "10000+", "tokens": 1, "mean_norm": 10.0, "std_norm": 0.0}]
