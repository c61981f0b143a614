"""Informativeness and length over a set of outputs: Dist-n and AvgLen.

Every output is a list of tokens: the lower-cased words of the shared spaCy segmentation (`pipeline.segment`),
punctuation included, so all systems are counted the same way whatever tokenizer produced them.
"""
import math


def ngrams(tokens: list[str], n: int) -> list[tuple[str, ...]]:
    """The len(tokens) - n + 1 contiguous n-grams of `tokens` (none if it is shorter than n)."""
    return [tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]


def distinct_n(outputs: list[list[str]], n: int) -> float:
    """Dist-n x 100: distinct n-grams / all n-grams, pooled over the whole output set. NaN when there is no n-gram."""
    grams = [g for tokens in outputs for g in ngrams(tokens, n)]
    return 100.0 * len(set(grams)) / len(grams) if grams else math.nan


def avg_len(outputs: list[list[str]]) -> float:
    """AvgLen: mean number of tokens per output (empty outputs count as 0). NaN for an empty set."""
    return sum(len(t) for t in outputs) / len(outputs) if outputs else math.nan
