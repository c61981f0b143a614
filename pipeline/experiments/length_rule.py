"""Which response length for a freed structure? (docs/diffusion.md, "Controls that steer").

A level given alone frees the sentence and word structure, but the sampler still needs a number of response positions.
This compares the sources respond can take it from against the length of the gold response (WordPieces,
len(subword_word)) on held-out examples, without decoding anything:
- candidate: the top-1 retrieved candidate's own length (what retrieval-based steering uses);
- donors_candidate: pipeline.respond.length_donors for the candidate's CM and first intent (what is known at inference);
- donors_gold: length_donors for the gold response's own CM and first intent (an oracle: how much the controls say);
- median: the training responses' median length, for every example.
Per source: mae and median_error (absolute, WordPieces), spearman (rank correlation with the gold lengths; null for a
constant), mean (the gold's is `gold_mean`).
"""
import numpy as np
import pandas as pd

from pipeline.labels import MECHANISMS
from pipeline.respond import Overrides, length_donors


def spearman(x: np.ndarray, y: np.ndarray) -> float | None:
    """Spearman's rank correlation (Pearson's on average ranks, ties shared); None when x is constant."""
    if x.std() == 0:
        return None
    return float(np.corrcoef(pd.Series(x).rank(), pd.Series(y).rank())[0, 1])


def donor_length(pool: pd.DataFrame, row: pd.Series) -> int:
    """The length length_donors picks for a row's CM and first intent (schema CONTROLS rows)."""
    asked = Overrides(cm=frozenset(m for m in MECHANISMS if row[f"cm_{m}"]),
                      intents=(row["intents"][0],) if len(row["intents"]) else None)
    return len(length_donors(pool, asked, 1)[0]["subword_word"])


def length_rule_errors(pool: pd.DataFrame, gold: pd.DataFrame, top: pd.DataFrame) -> dict:
    """pool: the training rows (schema CONTROLS); gold / top: the examples' gold rows and top-1 candidates, aligned
    (same order, schema CONTROLS columns) -> {"examples", "gold_mean", "sources": {name: {mae, median_error, spearman,
    mean}}} rounded to 3 decimals."""
    target = gold["subword_word"].map(len).to_numpy()
    sources = {"candidate": top["subword_word"].map(len).to_numpy(),
               "donors_candidate": np.array([donor_length(pool, r) for _, r in top.iterrows()]),
               "donors_gold": np.array([donor_length(pool, r) for _, r in gold.iterrows()]),
               "median": np.full(len(target), float(np.median(pool["subword_word"].map(len))))}
    report = {"examples": len(target), "gold_mean": round(float(target.mean()), 3), "sources": {}}
    for name, length in sources.items():
        error = np.abs(length - target)
        rho = spearman(length, target)
        report["sources"][name] = {"mae": round(float(error.mean()), 3), "median_error": float(np.median(error)),
                                   "spearman": None if rho is None else round(float(rho), 3),
                                   "mean": round(float(length.mean()), 3)}
    return report
