"""Controllability: how well the re-tagged output matches the control signals it was generated from.

- ACC-CM: per mechanism (ER, IP, EX), the share of outputs whose tagged presence equals the control's; the three
  accuracies are averaged (paper Table 2 caption).
- F1-CM (Table 4): per mechanism, the macro-F1 over its two classes, present and absent (the control as the reference,
  the tagged output as the prediction), pooled over all outputs; the three F1s are averaged as the accuracies are.
- ACC-IT: intents compared sentence by sentence, aligned by position (i-th output sentence vs i-th control intent).
  Unequal counts: every position up to max(#output sentences, #control intents) counts, so a missing or an extra
  sentence is an error. Pooled over all outputs: sum of matches / sum of max counts.
- F1-IT (Table 4): the macro-F1 over the 9 intent classes of the same aligned positions, pooled over all outputs. A
  position with a control intent but no output sentence is a false negative of that intent; a position with an output
  sentence but no control intent is a false positive of the tagged intent (the same positions ACC-IT counts as errors).
Macro-F1: per class F1 = 2 TP / (2 TP + FP + FN); the mean over the classes that occur (as a reference or a prediction:
2 TP + FP + FN > 0), a class that occurs on neither side having no F1; NaN when no class occurs.
- F1-SF: the SF labels other than the null "_" as multisets, order ignored (output words do not line up with the
  control's words): overlap = sum_label min(count_out, count_control); precision = overlap / #output labels,
  recall = overlap / #control labels, pooled over all outputs before the F1.
Each per-output function returns counts so that the set-level scores pool them (no average of per-output ratios).
"""
import math
from collections import Counter
from collections.abc import Sequence

import numpy as np

from pipeline.labels import INTENTS, MECHANISMS, SF_NULL

CM_COLUMNS = tuple(f"cm_{m}" for m in MECHANISMS)  # the control tables' bool column of each mechanism, in that order


def cm_matches(tagged: np.ndarray, control: np.ndarray) -> np.ndarray:
    """tagged, control: bool [N, 3] (columns labels.MECHANISMS) -> bool [N, 3], True where they agree."""
    return np.asarray(tagged, bool) == np.asarray(control, bool)


def cm_accuracy(matches: np.ndarray) -> dict[str, float]:
    """matches: bool [N, 3] from `cm_matches` -> {"er", "ip", "ex", "mean"} accuracies x 100 (NaN when N = 0)."""
    per = {m: 100.0 * float(matches[:, j].mean()) if len(matches) else math.nan for j, m in enumerate(MECHANISMS)}
    return {**per, "mean": sum(per.values()) / len(per)}


def cm_confusion(tagged: np.ndarray, control: np.ndarray) -> np.ndarray:
    """tagged, control: bool [N, 3] as for `cm_matches` -> int [N, 3 mechanisms, 2 classes (present, absent),
    (TP, FP, FN)]: each output's count for each class of each mechanism, the control being the reference."""
    t, c = np.asarray(tagged, bool), np.asarray(control, bool)
    present = np.stack([t & c, t & ~c, ~t & c], -1)  # [N, 3, (TP, FP, FN)]
    absent = np.stack([~t & ~c, ~t & c, t & ~c], -1)
    return np.stack([present, absent], 2).astype(int)


def macro_f1(counts: np.ndarray) -> float:
    """counts: int [C, (TP, FP, FN)] summed over outputs -> the mean F1 x 100 of the classes that occur; NaN if none."""
    tp, fp, fn = np.asarray(counts).T
    occurs = 2 * tp + fp + fn > 0
    return 100.0 * float(np.mean(2 * tp[occurs] / (2 * tp + fp + fn)[occurs])) if occurs.any() else math.nan


def cm_f1(confusion: np.ndarray) -> dict[str, float]:
    """confusion: `cm_confusion` summed over outputs, int [3, 2, 3] -> {"er", "ip", "ex", "mean"} macro-F1s x 100."""
    per = {m: macro_f1(confusion[j]) for j, m in enumerate(MECHANISMS)}
    return {**per, "mean": sum(per.values()) / len(per)}


def aligned_intents(tagged: Sequence[str], control: Sequence[str]) -> list[tuple[str | None, str | None]]:
    """(control intent, tagged intent) of every position up to max(len(tagged), len(control)); None where that side
    has no sentence."""
    n = max(len(tagged), len(control))
    return list(zip([*control, *[None] * (n - len(control))], [*tagged, *[None] * (n - len(tagged))]))


def intent_matches(tagged: list[str], control: list[str]) -> tuple[int, int]:
    """(positions where the i-th tagged intent equals the i-th control intent, max(len(tagged), len(control)))."""
    pairs = aligned_intents(tagged, control)
    return sum(c == t for c, t in pairs), len(pairs)


def intent_confusion(tagged: Sequence[str], control: Sequence[str]) -> np.ndarray:
    """int [9 classes (labels.INTENTS), (TP, FP, FN)] of one output's `aligned_intents`; None is no class."""
    index = {label: i for i, label in enumerate(INTENTS)}
    out = np.zeros((len(INTENTS), 3), int)
    for c, t in aligned_intents(tagged, control):
        if c == t:
            out[index[c], 0] += 1
            continue
        if t is not None:
            out[index[t], 1] += 1
        if c is not None:
            out[index[c], 2] += 1
    return out


def intent_positions(tagged: Sequence[Sequence[str]], control: Sequence[Sequence[str]]) -> np.ndarray:
    """`intent_matches` of each output's tagged intents against its control intents -> int [N, (matched, counted)]."""
    return np.array([intent_matches(list(t), list(c)) for t, c in zip(tagged, control)], dtype=int).reshape(-1, 2)


def intent_confusions(tagged: Sequence[Sequence[str]], control: Sequence[Sequence[str]]) -> np.ndarray:
    """`intent_confusion` of each output's tagged intents against its control intents -> int [N, 9, (TP, FP, FN)]."""
    return np.array([intent_confusion(list(t), list(c)) for t, c in zip(tagged, control)],
                    dtype=int).reshape(-1, len(INTENTS), 3)


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
