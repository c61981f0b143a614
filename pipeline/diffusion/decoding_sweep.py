"""The decoding sweep (off the DAG; table in docs/diffusion.md): how many sampler steps, how many draws, at which
temperature, kept by which rerank rule.

For each step count and temperature: max(draws) seeded draws of every control row (`generate.draw`: draw j is seeded
with seed + j, so the first n draws are exactly those of `sample.num_samples = n`), each text scored once by the
rerankers' models; for each n in draws and each rule in reranks, the rule's choice among the first n (`generate.pick`,
as `sample.rerank`) is kept and the kept texts are scored:
- fluency_ppl_smollm2: the score stage's metric (the fluency and controls rules' own model: they optimise it);
- bertscore_f1_minilm: the score stage's BERTScore against the gold response (mean over rows);
- dist2: distinct bigrams / bigrams x100 over lower-cased word and punctuation tokens (a regex, not the score stage's
  spaCy words: compare the rows with each other, not with the README table);
- acc_cm, acc_it: the score stage's ACC-CM and ACC-IT against the rows' controls (with a control judge; the controls
  rule's own judges);
- sample_seconds: the sampling time of n draws (the max(draws) run, scaled by n / max(draws)).
Greedy unmasking (temperature 0, masked family) draws the same text every time: it is run once, n = 1.
"""
import dataclasses
import itertools
import re
import time
from collections.abc import Callable, Sequence

import numpy as np
from torch import nn

from pipeline.diffusion.generate import RERANKS, ContextRelevance, FluencyNLL, SampleConfig, draw, pick
from pipeline.diffusion.vocab import Vocab
from pipeline.errors import PipelineError
from pipeline.judges import ControlAgreement, agreement
from pipeline.metrics.control import cm_accuracy, ratio
from pipeline.metrics.diversity import distinct_n
from pipeline.metrics.relevance import fluency_ppl

WORD = re.compile(r"\w+|[^\w\s]")  # a word or one punctuation mark


def sweep_decoding(model: nn.Module, vocab: Vocab, rows: Sequence[dict], gold: Sequence[str], cfg: SampleConfig,
                   seed: int, temperatures: Sequence[float], draws: Sequence[int], strength: float,
                   fluency_nll: FluencyNLL, bertscore: Callable[[list[str], list[str]], np.ndarray],
                   reranks: Sequence[str] = ("fluency",), judge: ControlAgreement | None = None,
                   steps: Sequence[int | None] | None = None,
                   relevance: ContextRelevance | None = None) -> list[dict]:
    """rows: control-source rows (generate.control_rows), gold: their reference responses; judge: re-tags the draws
    (needed by rule controls; without it acc_cm / acc_it are NaN); steps: the sampler step counts (default: cfg.steps
    alone); relevance: of a draw to its context (needed by rule relevance). -> one dict per (steps, temperature, n,
    rule): steps, temperature, draws, rerank, fluency_ppl_smollm2, bertscore_f1_minilm, dist2, acc_cm, acc_it,
    sample_seconds."""
    unknown = [r for r in reranks if r not in RERANKS]
    if unknown or ("controls" in reranks and judge is None) or ("relevance" in reranks and relevance is None):
        raise PipelineError(f"reranks {', '.join(reranks)}: use rules of {', '.join(RERANKS)}; controls needs a judge, "
                            "relevance a relevance scorer")
    table, rows_i = [], np.arange(len(rows))
    for n_steps, temperature in itertools.product([cfg.steps] if steps is None else steps, temperatures):
        most = max(draws) if temperature > 0 or model.cfg.family == "continuous" else 1
        start = time.perf_counter()
        texts = draw(model, vocab, rows, dataclasses.replace(cfg, steps=n_steps, temperature=temperature,
                                                             num_samples=most), seed, strength)  # [most][rows]
        seconds = time.perf_counter() - start
        nll = np.stack([fluency_nll(t) for t in texts])  # [most, rows]
        checks = [judge.check(rows, t) for t in texts] if judge else None  # per draw: cm_ok [rows, 3], it [rows, 2]
        agree = np.stack([agreement(*c) for c in checks]) if checks else None  # [most, rows]
        related = (relevance(list(rows) * most, [t for d in texts for t in d]).reshape(most, len(rows))
                   if relevance else None)  # [most, rows]: one call, each context encoded once (as generate.rerank)
        for n in sorted({min(n, most) for n in draws}):
            for rule in reranks:
                kept_draw = pick(rule, texts[:n], nll[:n], None if agree is None else agree[:n],
                                 None if related is None else related[:n])  # [rows]
                kept = [texts[d][i] for i, d in enumerate(kept_draw)]
                if checks:
                    cm_ok = np.stack([checks[d][0][i] for i, d in enumerate(kept_draw)])  # [rows, 3]
                    it = np.stack([checks[d][1][i] for i, d in enumerate(kept_draw)])  # [rows, 2]
                    acc_cm, acc_it = cm_accuracy(cm_ok)["mean"], ratio(*it.sum(0))
                else:
                    acc_cm = acc_it = float("nan")
                table.append({
                    "steps": n_steps, "temperature": temperature, "draws": n, "rerank": rule,
                    "fluency_ppl_smollm2": round(fluency_ppl(nll[kept_draw, rows_i]), 1),
                    "bertscore_f1_minilm": round(float(bertscore(kept, list(gold)).mean()), 4),
                    "dist2": round(distinct_n([WORD.findall(t.lower()) for t in kept], 2), 2),
                    "acc_cm": round(acc_cm, 2), "acc_it": round(acc_it, 2),
                    "sample_seconds": round(seconds * n / most, 1)})
    return table
