"""The length rule's measurement on a hand-made pool (pipeline/experiments/length_rule.py)."""
import pandas as pd

from pipeline.experiments.length_rule import length_rule_errors


def rows(*specs) -> pd.DataFrame:
    """(mechanism present, first intent, length) -> rows with the CONTROLS columns the rule reads."""
    return pd.DataFrame([{"cm_er": m == "er", "cm_ip": m == "ip", "cm_ex": m == "ex", "intents": [intent],
                          "subword_word": list(range(n))} for m, intent, n in specs])


def test_each_source_against_the_gold_lengths():
    pool = rows(("er", "questioning", 2), ("er", "questioning", 4), ("er", "questioning", 6), ("ex", "neutral", 10))
    gold = rows(("er", "questioning", 4), ("ex", "neutral", 8))
    top = rows(("ex", "neutral", 10), ("er", "questioning", 2))
    report = length_rule_errors(pool, gold, top)
    src = report["sources"]
    assert report["examples"] == 2 and report["gold_mean"] == 6.0
    # candidate 10, 2 against 4, 8: both off by 6, ranked the wrong way round
    assert src["candidate"] == {"mae": 6.0, "median_error": 6.0, "spearman": -1.0, "mean": 6.0}
    # donors: the ex/neutral pool row (10); the er/questioning rows' median (4)
    assert src["donors_candidate"]["mae"] == 5.0 and src["donors_candidate"]["mean"] == 7.0
    assert src["donors_gold"] == {"mae": 1.0, "median_error": 1.0, "spearman": 1.0, "mean": 7.0}
    # the pool's median of 2, 4, 6, 10 is 5 for both: off by 1 and 3; a constant has no rank correlation
    assert src["median"] == {"mae": 2.0, "median_error": 2.0, "spearman": None, "mean": 5.0}
