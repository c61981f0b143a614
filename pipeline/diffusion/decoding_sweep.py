"""The decoding sweep (off the DAG; table in docs/diffusion.md): how many draws, at which temperature, kept by fluency.

For each temperature: max(draws) seeded draws of every control row (`generate.draw`: draw j is seeded with seed + j,
so the first n draws are exactly those of `sample.num_samples = n`), each text scored once by the reranker's language
model; for each n in draws, the most fluent of the first n is kept (`fluency_pick`, as `sample.rerank: fluency`) and
the kept texts are scored:
- fluency_ppl_smollm2: the score stage's metric (the reranker's own model: it is what the rerank optimises);
- bertscore_f1_minilm: the score stage's BERTScore against the gold response (mean over rows);
- dist2: distinct bigrams / bigrams x100 over lower-cased word and punctuation tokens (a regex, not the score stage's
  spaCy words: compare the rows with each other, not with the README table);
- sample_seconds: the sampling time of n draws (the max(draws) run, scaled by n / max(draws)).
Greedy unmasking (temperature 0, masked family) draws the same text every time: it is run once, n = 1.
"""
import dataclasses
import re
import time
from collections.abc import Callable, Sequence

import numpy as np
from torch import nn

from pipeline.diffusion.generate import FluencyNLL, SampleConfig, draw, fluency_pick
from pipeline.diffusion.vocab import Vocab
from pipeline.metrics.diversity import distinct_n
from pipeline.metrics.relevance import fluency_ppl

WORD = re.compile(r"\w+|[^\w\s]")  # a word or one punctuation mark


def sweep_decoding(model: nn.Module, vocab: Vocab, rows: Sequence[dict], gold: Sequence[str], cfg: SampleConfig,
                   seed: int, temperatures: Sequence[float], draws: Sequence[int], strength: float,
                   fluency_nll: FluencyNLL, bertscore: Callable[[list[str], list[str]], np.ndarray]) -> list[dict]:
    """rows: control-source rows (generate.control_rows), gold: their reference responses. -> one dict per
    (temperature, n): temperature, draws, fluency_ppl_smollm2, bertscore_f1_minilm, dist2, sample_seconds."""
    table = []
    for temperature in temperatures:
        most = max(draws) if temperature > 0 or model.cfg.family == "continuous" else 1
        start = time.perf_counter()
        texts = draw(model, vocab, rows, dataclasses.replace(cfg, temperature=temperature, num_samples=most), seed,
                     strength)  # [most][rows]
        seconds = time.perf_counter() - start
        nll = np.stack([fluency_nll(t) for t in texts])  # [most, rows]
        for n in sorted({min(n, most) for n in draws}):
            pick = fluency_pick(nll[:n])  # [rows]
            kept = [texts[d][i] for i, d in enumerate(pick)]
            table.append({
                "temperature": temperature, "draws": n,
                "fluency_ppl_smollm2": round(fluency_ppl(nll[pick, np.arange(len(rows))]), 1),
                "bertscore_f1_minilm": round(float(bertscore(kept, list(gold)).mean()), 4),
                "dist2": round(distinct_n([WORD.findall(t.lower()) for t in kept], 2), 2),
                "sample_seconds": round(seconds * n / most, 1)})
    return table
