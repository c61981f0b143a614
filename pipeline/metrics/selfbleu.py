"""Self-BLEU (Zhu et al. 2018): the BLEU-5 of each output against all the other outputs as references, averaged.

Per hypothesis h this is sentence BLEU exactly as NLTK's `sentence_bleu` computes it with weights (1/5,)*5 and
`SmoothingFunction().method1` (the Texygen setting the metric comes from):
- p_n = sum_g min(c_h(g), max_{r != h} c_r(g)) / max(1, #n-grams of h); a zero numerator becomes EPSILON (method1);
- BLEU = 0 when no unigram matches (this covers an empty h); else BP * exp(mean_n log p_n);
- BP = 1 if |h| > r* else exp(1 - r*/|h|), r* the reference length closest to |h| (the shorter one on a tie).

Brute force costs O(N^2): every hypothesis scans every other output. Here the n-gram counts are computed once and a
global table keeps, per n-gram, the largest count over all outputs, how many outputs reach it, and the largest count
below it. Leaving h out then changes the max only when h alone holds it, in which case the runner-up is the max of the
others. The closest reference length comes from the length histogram with h's own length removed the same way.
Total cost O(total n-grams) in Python dicts: thousands of outputs take a second.
"""
import bisect
import math
from collections import Counter

import numpy as np

from pipeline.metrics.diversity import ngrams

MAX_N = 5
EPSILON = 0.1  # NLTK SmoothingFunction().method1


def ngram_counts(tokens: list[str], max_n: int = MAX_N) -> list[Counter]:
    """Counts of the n-grams of `tokens` for n = 1..max_n (index n - 1)."""
    return [Counter(ngrams(tokens, n)) for n in range(1, max_n + 1)]


def max_count_table(counts: list[Counter]) -> dict[tuple, list[int]]:
    """n-gram -> [max count over outputs, number of outputs with that count, largest count below it (0 if none)]."""
    table: dict[tuple, list[int]] = {}
    for c in counts:
        for gram, k in c.items():
            top = table.get(gram)
            if top is None:
                table[gram] = [k, 1, 0]
            elif k > top[0]:
                top[:] = [k, 1, top[0]]
            elif k == top[0]:
                top[1] += 1
            elif k > top[2]:
                top[2] = k
    return table


def max_in_others(top: list[int], own: int) -> int:
    """Largest count of an n-gram among the outputs other than one holding it `own` times."""
    best, holders, runner_up = top
    return runner_up if own == best and holders == 1 else best


def closest_other_length(length: int, length_hist: Counter, sorted_lengths: list[int]) -> int:
    """Length closest to `length` among the other outputs (ties -> shorter), `length` being one output's own length.

    length_hist: length -> number of outputs; sorted_lengths: the distinct lengths, ascending (`length` is one).
    """
    if length_hist[length] > 1:
        return length
    i = bisect.bisect_left(sorted_lengths, length)  # sorted_lengths[i] == length, held by this output alone
    below = sorted_lengths[i - 1] if i > 0 else None
    above = sorted_lengths[i + 1] if i + 1 < len(sorted_lengths) else None
    if below is None or (above is not None and above - length < length - below):
        return above
    return below


def sentence_bleu(clipped: list[int], totals: list[int], hyp_len: int, ref_len: int) -> float:
    """NLTK sentence BLEU from per-order clipped match counts and hypothesis n-gram totals (uniform weights)."""
    if clipped[0] == 0:
        return 0.0
    log_p = [math.log((m if m else EPSILON) / max(1, t)) for m, t in zip(clipped, totals)]
    bp = 1.0 if hyp_len > ref_len else math.exp(1 - ref_len / hyp_len)
    return bp * math.exp(sum(log_p) / len(log_p))


def pair_bleu(hypothesis: list[str], reference: list[str], max_n: int = 4) -> float:
    """Sentence BLEU-max_n of one hypothesis against one reference (NLTK's definition and smoothing, as above)."""
    hyp, ref = ngram_counts(hypothesis, max_n), ngram_counts(reference, max_n)
    clipped = [sum((h & r).values()) for h, r in zip(hyp, ref)]
    return sentence_bleu(clipped, [sum(h.values()) for h in hyp], len(hypothesis), len(reference))


def self_bleu(outputs: list[list[str]], max_n: int = MAX_N) -> np.ndarray:
    """BLEU-max_n of each output against all the others -> float64 [N] in [0, 1]; all NaN when N < 2 (no reference)."""
    if len(outputs) < 2:
        return np.full(len(outputs), np.nan)
    counts = [ngram_counts(t, max_n) for t in outputs]  # [N][max_n] Counters
    tables = [max_count_table([c[n] for c in counts]) for n in range(max_n)]
    lengths = [len(t) for t in outputs]
    length_hist, sorted_lengths = Counter(lengths), sorted(set(lengths))
    scores = np.empty(len(outputs))
    for i, (own, length) in enumerate(zip(counts, lengths)):
        clipped = [sum(min(k, max_in_others(tables[n][g], k)) for g, k in own[n].items()) for n in range(max_n)]
        totals = [sum(own[n].values()) for n in range(max_n)]
        scores[i] = sentence_bleu(clipped, totals, length, closest_other_length(length, length_hist, sorted_lengths))
    return scores
