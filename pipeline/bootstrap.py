"""Bootstrap resampling of per-example figures: the intervals of the ablation study, the CM probe and the steering
benchmark."""
import numpy as np

BOOTSTRAP_SEED = 0  # the resamples' own seed: the same draws whatever the run's seed


def bootstrap_draws(n: int, resamples: int, seed: int = BOOTSTRAP_SEED) -> np.ndarray:
    """int [resamples, n]: each row a resample of n example indices with replacement."""
    return np.random.default_rng(seed).integers(0, n, (resamples, n))


def interval(x: np.ndarray, resamples: int, seed: int) -> dict[str, float]:
    """Per-example values x [N] -> {"mean", "low", "high"}: the mean and its bootstrap 95% percentile interval."""
    low, high = np.percentile(x[bootstrap_draws(len(x), resamples, seed)].mean(1), [2.5, 97.5])
    return {"mean": float(x.mean()), "low": float(low), "high": float(high)}
