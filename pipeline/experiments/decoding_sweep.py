"""The decoding sweep (off the DAG; table in docs/diffusion.md): how many sampler steps, how many draws of how many
candidates per example, at which temperature, kept by which rerank rule.

For each step count and temperature: max(draws) seeded draws of every control row (`Decoder.draw`: draw j is seeded
with seed + j, so the first n draws are exactly those of `sample.num_samples = n`), each text scored once by the
rerankers' models (`rerank.score`); for each c in candidates, n in draws and rule in reranks, the rule's choice among
the first n draws of the first c candidates of each example (`rerank.pick_pooled`, as `sample.rerank` with
`sample.candidates = c`) is kept and the kept texts are scored:
- fluency_ppl_smollm2: the score stage's metric (the fluency and controls rules' own model: they optimise it);
- bertscore_f1_minilm: the score stage's BERTScore against the gold response (mean over rows);
- dist2: distinct bigrams / bigrams x100 over lower-cased word and punctuation tokens (a regex, not the score stage's
  spaCy words: compare the rows with each other, not with the README table);
- acc_cm, acc_it: the score stage's ACC-CM and ACC-IT against the rows' controls (with a control judge; the controls
  rule's own judges);
- f1_sf: the score stage's F1-SF against the rows' SF controls (with a frame tagger);
- sample_seconds: the sampling time of n draws (the max(draws) run, scaled by n / max(draws)).
Greedy unmasking (temperature 0, masked family) draws the same text every time: it is run once, n = 1.
"""
import dataclasses
import itertools
import re
import time
from collections.abc import Callable, Sequence

import numpy as np

from pipeline.decoder import Decoder
from pipeline.diffusion.config import RERANKS
from pipeline.errors import PipelineError
from pipeline.judges import agreement
from pipeline.metrics.control import cm_accuracy, f1, ratio, sf_overlap
from pipeline.metrics.diversity import distinct_n
from pipeline.metrics.relevance import fluency_ppl
from pipeline.rerank import Scores, pick_pooled, score

WORD = re.compile(r"\w+|[^\w\s]")  # a word or one punctuation mark


def sweep_decoding(decoder: Decoder, rows: Sequence[dict], gold: Sequence[str], seed: int,
                   temperatures: Sequence[float], draws: Sequence[int], edit: bool,
                   bertscore: Callable[[list[str], list[str]], np.ndarray], reranks: Sequence[str] = ("fluency",),
                   steps: Sequence[int | None] | None = None, candidates: Sequence[int] = (1,), per_example: int = 1,
                   frames: Callable[[list[str]], list[list[str]]] | None = None) -> list[dict]:
    """decoder: the model, the `sample` settings the sweep varies, and the judges: fluency_nll (always read),
    agreement (a ControlAgreement: rule controls and acc_cm / acc_it, NaN without it), relevance (rule relevance).
    rows: control-source rows (subset.control_rows), `per_example` consecutive rows per example (its candidates,
    best first); gold: the reference response of each row's example; edit: start from the candidates' responses at
    decoder.cfg.edit_strength; steps: the sampler step counts (default: decoder.cfg.steps alone); candidates: how many
    of each example's rows compete (each at most per_example); frames: texts -> one SF label per word of each (the
    score stage's tagger; without it f1_sf is NaN). -> one dict per (steps, temperature, candidates, n, rule): steps,
    temperature, candidates, draws, rerank, fluency_ppl_smollm2, bertscore_f1_minilm, dist2, acc_cm, acc_it, f1_sf,
    sample_seconds (of the draws of the rows that compete)."""
    judges, judge = decoder.judges, decoder.judges.agreement
    unknown = [r for r in reranks if r not in RERANKS]
    if unknown or judges.fluency_nll is None or ("controls" in reranks and judge is None) or (
            "relevance" in reranks and judges.relevance is None):
        raise PipelineError(f"reranks {', '.join(reranks)}: use rules of {', '.join(RERANKS)}; every rule needs a "
                            "language model, controls a judge, relevance a relevance scorer")
    if len(rows) % per_example or not all(1 <= c <= per_example for c in candidates):
        raise PipelineError(f"candidates {list(candidates)}: each from 1 to the {per_example} rows per example")
    table = []
    for n_steps, temperature in itertools.product([decoder.cfg.steps] if steps is None else steps, temperatures):
        most = max(draws) if temperature > 0 or decoder.model.cfg.family == "continuous" else 1
        start = time.perf_counter()
        texts, whole = decoder.with_settings(steps=n_steps, temperature=temperature, num_samples=most).draw(
            rows, seed, edit)  # [most][rows]; whole: as stage sample, a cut row's draws only when none is whole
        seconds = time.perf_counter() - start
        text_matrix = np.array([t for d in texts for t in d], dtype=object).reshape(most, len(rows))
        checks = [judge.check(rows, t) for t in texts] if judge else None  # per draw: cm_ok [rows, 3], it [rows, 2]
        scores = dataclasses.replace(score(text_matrix, rows, {"fluency", *reranks} - {"controls"}, judges),
                                     agreement=np.stack([agreement(*c) for c in checks]) if checks else None)
        for c, n, rule in itertools.product(candidates, sorted({min(n, most) for n in draws}), reranks):
            rows_c = np.array([i for i in range(len(rows)) if i % per_example < c])  # the first c of each example
            first_n = lambda m: None if m is None else np.asarray(m)[:n][:, rows_c]  # [n, rows_c]
            subset = Scores(first_n(scores.nll), first_n(scores.agreement), first_n(scores.relevance))
            kept = [(rows_c[i], d) for i, d in pick_pooled(rule, first_n(text_matrix), subset, c, whole[rows_c])]
            if checks:
                cm_ok = np.stack([checks[d][0][i] for i, d in kept])  # [examples, 3]
                it = np.stack([checks[d][1][i] for i, d in kept])  # [examples, 2]
                acc_cm, acc_it = cm_accuracy(cm_ok)["mean"], ratio(*it.sum(0))
            else:
                acc_cm = acc_it = float("nan")
            kept_texts = [texts[d][i] for i, d in kept]
            f1_sf = (f1(*np.sum([sf_overlap(tagged, list(rows[i]["sf"]))
                                 for tagged, (i, _) in zip(frames(kept_texts), kept)], axis=0))
                     if frames else float("nan"))
            table.append({
                "steps": n_steps, "temperature": temperature, "candidates": c, "draws": n, "rerank": rule,
                "fluency_ppl_smollm2": round(fluency_ppl(np.array([scores.nll[d, i] for i, d in kept])), 1),
                "bertscore_f1_minilm": round(float(bertscore(kept_texts, [gold[i] for i, _ in kept]).mean()), 4),
                "dist2": round(distinct_n([WORD.findall(t.lower()) for t in kept_texts], 2), 2),
                "acc_cm": round(acc_cm, 2), "acc_it": round(acc_it, 2), "f1_sf": round(f1_sf, 2),
                "sample_seconds": round(seconds * n / most * c / per_example, 1)})
    return table
