"""Controllability: how well the re-tagged output matches the control signals it was generated from.

- ACC-CM: per mechanism (ER, IP, EX), the share of outputs whose tagged presence equals the control's; the three
  accuracies are averaged (paper Table 2 caption).
- ACC-IT: intents compared sentence by sentence, aligned by position (i-th output sentence vs i-th control intent).
  Unequal counts: every position up to max(#output sentences, #control intents) counts, so a missing or an extra
  sentence is an error. Pooled over all outputs: sum of matches / sum of max counts.
- F1-SF: the SF labels other than the null "_" as multisets, order ignored (output words do not line up with the
  control's words): overlap = sum_label min(count_out, count_control); precision = overlap / #output labels,
  recall = overlap / #control labels, pooled over all outputs before the F1.
Each per-output function returns counts so that the set-level scores pool them (no average of per-output ratios).
"""
import math
from collections import Counter
from collections.abc import Sequence

import numpy as np

from pipeline.labels import MECHANISMS, SF_NULL

CM_COLUMNS = tuple(f"cm_{m}" for m in MECHANISMS)  # the control tables' bool column of each mechanism, in that order


def cm_matches(tagged: np.ndarray, control: np.ndarray) -> np.ndarray:
    """tagged, control: bool [N, 3] (columns labels.MECHANISMS) -> bool [N, 3], True where they agree."""
    return np.asarray(tagged, bool) == np.asarray(control, bool)


def cm_accuracy(matches: np.ndarray) -> dict[str, float]:
    """matches: bool [N, 3] from `cm_matches` -> {"er", "ip", "ex", "mean"} accuracies x 100 (NaN when N = 0)."""
    per = {m: 100.0 * float(matches[:, j].mean()) if len(matches) else math.nan for j, m in enumerate(MECHANISMS)}
    return {**per, "mean": sum(per.values()) / len(per)}


def intent_matches(tagged: list[str], control: list[str]) -> tuple[int, int]:
    """(positions where the i-th tagged intent equals the i-th control intent, max(len(tagged), len(control)))."""
    return sum(a == b for a, b in zip(tagged, control)), max(len(tagged), len(control))


def intent_positions(tagged: Sequence[Sequence[str]], control: Sequence[Sequence[str]]) -> np.ndarray:
    """`intent_matches` of each output's tagged intents against its control intents -> int [N, (matched, counted)]."""
    return np.array([intent_matches(list(t), list(c)) for t, c in zip(tagged, control)], dtype=int).reshape(-1, 2)


def sf_overlap(tagged: list[str], control: list[str]) -> tuple[int, int, int]:
    """(multiset overlap, #tagged, #control) of the non-null SF labels of one output and its control."""
    out, ref = Counter(t for t in tagged if t != SF_NULL), Counter(c for c in control if c != SF_NULL)
    return sum((out & ref).values()), sum(out.values()), sum(ref.values())


def ratio(num: float, den: float) -> float:
    """num / den x 100, NaN when nothing was counted."""
    return 100.0 * num / den if den else math.nan


def f1(overlap: int, n_tagged: int, n_control: int) -> float:
    """F1 x 100 from pooled counts; 0 when there are labels but no overlap, NaN when neither side has a label."""
    if n_tagged + n_control == 0:
        return math.nan
    return 100.0 * 2 * overlap / (n_tagged + n_control)
