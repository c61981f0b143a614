"""Every Table 2 metric on tiny hand-computed cases; self-BLEU against a brute-force version and against NLTK."""
import math
import random
from collections import Counter

import numpy as np
import pytest
import torch
from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu

from pipeline.metrics.control import (aligned_intents, cm_accuracy, cm_confusion, cm_f1, cm_matches, f1, intent_confusion,
                                     intent_confusions, intent_matches, macro_f1, ratio, sf_overlap)
from pipeline.metrics.diversity import avg_len, distinct_n, ngrams
from pipeline.metrics.relevance import MIScorer, miscore, target_nll
from pipeline.metrics.selfbleu import self_bleu


# --- Dist-n, AvgLen -------------------------------------------------------------------------------------------------
def test_distinct_n_pools_ngrams_over_the_set():
    outputs = [["a", "b", "a"], ["a", "b"]]
    assert distinct_n(outputs, 1) == pytest.approx(100 * 2 / 5)  # a b a a b
    assert distinct_n(outputs, 2) == pytest.approx(100 * 2 / 3)  # ab ba ab
    assert math.isnan(distinct_n(outputs, 4))  # no 4-gram at all
    assert avg_len(outputs) == 2.5


def test_empty_and_identical_outputs_have_no_division_error():
    assert math.isnan(distinct_n([], 1)) and math.isnan(avg_len([]))
    assert math.isnan(distinct_n([[], []], 1)) and avg_len([[], []]) == 0.0
    same = [["i", "am", "so", "sorry", "."]] * 4
    assert distinct_n(same, 1) == pytest.approx(100 * 5 / 20)
    assert self_bleu(same) == pytest.approx([1.0] * 4)
    # Shorter than 5 tokens: p4 and p5 have no n-gram and take method1's 0.1, as NLTK does.
    assert self_bleu([["so", "sorry", "."]] * 2) == pytest.approx([0.01 ** 0.2] * 2)
    assert np.all(self_bleu([[], []]) == 0.0)  # no unigram matches: BLEU 0
    assert np.isnan(self_bleu([["alone"]])).all() and len(self_bleu([])) == 0


# --- self-BLEU ------------------------------------------------------------------------------------------------------
def brute_force_bleu(hyp: list[str], refs: list[list[str]], max_n: int = 5, eps: float = 0.1) -> float:
    """NLTK sentence_bleu (uniform weights, SmoothingFunction().method1), written out naively."""
    clipped, totals = [], []
    for n in range(1, max_n + 1):
        own = Counter(ngrams(hyp, n))
        best = Counter()
        for ref in refs:
            for g, k in Counter(ngrams(ref, n)).items():
                best[g] = max(best[g], k)
        clipped.append(sum(min(k, best[g]) for g, k in own.items()))
        totals.append(sum(own.values()))
    if clipped[0] == 0:
        return 0.0
    ref_len = min((len(r) for r in refs), key=lambda r: (abs(r - len(hyp)), r))
    bp = 1.0 if len(hyp) > ref_len else math.exp(1 - ref_len / len(hyp))
    return bp * math.exp(sum(math.log((m or eps) / max(1, t)) for m, t in zip(clipped, totals)) / max_n)


def test_self_bleu_hand_computed():
    a, b = "a b c d e f".split(), "a b c d e g".split()
    # p1..p5 = 5/6, 4/5, 3/4, 2/3, 1/2 and equal lengths (BP = 1): BLEU = (1/6) ** (1/5) for both.
    assert self_bleu([a, b]) == pytest.approx([(1 / 6) ** 0.2] * 2)


def test_self_bleu_matches_brute_force():
    rng = random.Random(0)
    # Small vocabulary and lengths 0..12: repeated n-grams, shared maxima, unique maxima, length ties and short outputs.
    outputs = [[rng.choice("abcdef") for _ in range(rng.randint(0, 12))] for _ in range(60)]
    outputs += [outputs[3], ["a"] * 9, ["a"] * 8]  # a duplicate; a unique maximal count with its runner-up
    fast = self_bleu(outputs)
    slow = [brute_force_bleu(h, outputs[:i] + outputs[i + 1:]) for i, h in enumerate(outputs)]
    assert fast == pytest.approx(slow, abs=1e-12)


def test_self_bleu_leaves_the_hypothesis_out():
    # "x x x" is the only output holding x three times: its reference max for "x" is the others' 1, not its own 3.
    outputs = [["x", "x", "x"], ["x", "y", "z"], ["y", "z", "w"]]
    assert self_bleu(outputs)[0] == pytest.approx(brute_force_bleu(outputs[0], outputs[1:]))
    assert self_bleu(outputs)[0] < 1.0


def test_self_bleu_matches_nltk_sentence_bleu():
    # The definition ours follows, run as NLTK runs it: every output the hypothesis, all the others its references,
    # weights (1/5,)*5, SmoothingFunction().method1 (epsilon 0.1 for a zero count: the Texygen setting), NLTK's own
    # brevity penalty (closest reference length, shorter on a tie) and no auto_reweigh. The token lists are the same
    # ones score passes (lower-cased words); NLTK needs no downloaded data for BLEU.
    rng = random.Random(1)
    words = "i am so sorry to hear that you must be proud of her . !".split()
    outputs = [[rng.choice(words) for _ in range(rng.randint(1, 9))] for _ in range(18)]
    outputs += [["i", "am"], []]  # shorter than 5 tokens (p3..p5 smoothed) and empty (BLEU 0)
    smoothing = SmoothingFunction().method1
    nltk = [sentence_bleu(outputs[:i] + outputs[i + 1:], h, weights=(0.2,) * 5, smoothing_function=smoothing)
            for i, h in enumerate(outputs)]
    ours = self_bleu(outputs)
    assert ours == pytest.approx(nltk, abs=1e-12)
    assert np.mean(ours) == pytest.approx(np.mean(nltk), abs=1e-12) and 0 < np.mean(ours) < 1


# --- controllability ------------------------------------------------------------------------------------------------
def test_cm_accuracy_per_mechanism_then_averaged():
    tagged = np.array([[1, 0, 0], [1, 1, 0], [0, 0, 1], [0, 0, 0]], bool)
    control = np.array([[1, 0, 1], [0, 1, 0], [0, 0, 1], [0, 1, 0]], bool)
    acc = cm_accuracy(cm_matches(tagged, control))
    assert (acc["er"], acc["ip"], acc["ex"]) == (75.0, 75.0, 75.0) and acc["mean"] == 75.0
    assert math.isnan(cm_accuracy(np.zeros((0, 3), bool))["mean"])


def test_cm_f1_is_the_macro_f1_over_present_and_absent_per_mechanism_then_averaged():
    tagged = np.array([[1, 0, 0], [1, 1, 0], [0, 0, 1], [0, 0, 0]], bool)
    control = np.array([[1, 0, 1], [0, 1, 0], [0, 0, 1], [0, 1, 0]], bool)
    confusion = cm_confusion(tagged, control)
    assert confusion.shape == (4, 3, 2, 3)
    # ER: tagged 1100, control 1000. present: TP 1, FP 1, FN 0 (F1 2/3); absent: TP 2, FP 0, FN 1 (F1 4/5).
    assert confusion.sum(0)[0].tolist() == [[1, 1, 0], [2, 0, 1]]
    f1s = cm_f1(confusion.sum(0))
    assert f1s["er"] == pytest.approx(100 * (2 / 3 + 4 / 5) / 2)  # IP and EX: the same counts, mirrored
    assert f1s["ip"] == f1s["ex"] == f1s["er"] and f1s["mean"] == pytest.approx(f1s["er"])
    # A mechanism absent from every control and every output: its present class has no F1, absent is 100.
    assert cm_f1(cm_confusion(np.zeros((2, 3), bool), np.zeros((2, 3), bool)).sum(0))["mean"] == 100.0
    assert math.isnan(macro_f1(np.zeros((9, 3), int)))


def test_intent_f1_is_the_macro_f1_of_the_aligned_positions():
    assert aligned_intents(["wishing"], ["consoling", "agreeing"]) == [("consoling", "wishing"), ("agreeing", None)]
    outputs = [(["questioning", "sympathizing", "wishing"], ["questioning", "agreeing"]),  # (tagged, control)
               ([], ["consoling", "wishing"]), (["wishing"], ["wishing"])]
    counts = intent_confusions([t for t, _ in outputs], [c for _, c in outputs])
    assert counts.shape == (3, 9, 3) and np.array_equal(counts[2], intent_confusion(["wishing"], ["wishing"]))
    # questioning TP 1 (F1 1); sympathizing FP 1, agreeing FN 1, consoling FN 1 (F1 0); wishing: TP 1 (the third),
    # FP 1 (an extra sentence of the first), FN 1 (a missing sentence of the second): 2 / (2 + 1 + 1). Other 4: absent.
    assert macro_f1(counts.sum(0)) == pytest.approx(100 * (1 + 0 + 0 + 0.5 + 0) / 5)
    assert sum(intent_matches(t, c)[0] for t, c in outputs) == counts.sum(0)[:, 0].sum()  # the same positions


def test_intent_accuracy_with_unequal_sentence_counts():
    assert intent_matches(["questioning", "sympathizing", "wishing"], ["questioning", "agreeing"]) == (1, 3)
    assert intent_matches([], ["consoling", "wishing"]) == (0, 2)  # a missing sentence is an error
    assert intent_matches(["wishing"], ["wishing"]) == (1, 1)
    pairs = [(1, 3), (0, 2), (1, 1)]
    assert ratio(sum(c for c, _ in pairs), sum(t for _, t in pairs)) == pytest.approx(100 * 2 / 6)
    assert math.isnan(ratio(0, 0))


def test_sf_f1_multisets_with_repeated_labels():
    tagged = ["PRONOUN", "PRONOUN", "Emotion_directed", "_", "_"]
    control = ["PRONOUN", "Emotion_directed", "Emotion_directed", "Desiring", "_"]
    # overlap: PRONOUN min(2, 1) + Emotion_directed min(1, 2) = 2; 3 tagged, 4 control labels (the "_" ignored).
    assert sf_overlap(tagged, control) == (2, 3, 4)
    assert f1(2, 3, 4) == pytest.approx(100 * 2 * (2 / 3) * (2 / 4) / (2 / 3 + 2 / 4))
    assert f1(0, 3, 0) == 0.0 and math.isnan(f1(0, 0, 0))


# --- MIScore ----------------------------------------------------------------------------------------------------------
class BigramLM(torch.nn.Module):
    """A toy causal LM: the next-token distribution depends only on the current token (a fixed [V, V] table)."""

    def __init__(self, probs: torch.Tensor):
        super().__init__()
        self.log_probs = probs.log()  # [V, V]

    def forward(self, input_ids, attention_mask):
        return type("Out", (), {"logits": self.log_probs[input_ids]})()  # [B, T, V]


def test_target_nll_on_a_toy_lm():
    probs = torch.tensor([[0.1, 0.6, 0.3], [0.5, 0.25, 0.25], [0.2, 0.2, 0.6]])
    lm = BigramLM(probs)
    pairs = [([0], [1, 2]), ([2, 2, 0], [1]), ([1], [])]  # different lengths: padding must not leak in
    nll = target_nll(lm, pairs, batch_size=2, pad_id=0)
    assert nll[0] == pytest.approx(-(math.log(0.6) + math.log(0.25)) / 2)
    assert nll[1] == pytest.approx(-math.log(0.6))
    assert np.isnan(nll[2])  # no context token to score
    assert miscore(np.array([math.log(10), math.log(1000)])) == pytest.approx(100.0)
    assert math.isnan(miscore(np.array([])))


class CharTokenizer:
    """One id per character (its code point), as an MIScorer tokenizer."""
    pad_token_id = 0

    def encode(self, text, add_special_tokens=False):
        return [ord(c) for c in text]


def test_miscorer_puts_the_response_first_and_keeps_the_latest_context():
    scorer = MIScorer(model=None, tokenizer=CharTokenizer(), max_tokens=8)
    prefix, target = scorer.pair(["ab", "cdefgh"], "xyz")
    assert prefix == [ord(c) for c in "xyz\n"]  # max_tokens // 2 = 4 tokens of response
    assert target == [ord(c) for c in "efgh"]  # the last 8 - 4 context tokens
    prefix, target = scorer.pair(["ab"], "  abcdefg ")
    assert prefix == [ord(c) for c in "abc\n"] and target == [ord(c) for c in "ab"]  # the newline survives the cut
    assert scorer.pair(["ab"], "")[0] == [ord("\n")]  # an empty response still conditions the context
