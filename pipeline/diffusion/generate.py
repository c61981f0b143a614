"""Generation from control sources: the test subset every system is scored on, and batched sampling of responses.

A control source is a row with the query's `context` and a candidate's CONTROL_FIELDS (candidates.parquet in retrieved
or oracle mode): the response takes the candidate's word and sentence structure (see inputs.encode_example). With
strength < 1 the candidate's own response is the starting point (sampler.py). Several draws per row can be reranked:
MBR keeps the draw with the highest mean similarity to the other draws (similarity: `overlap`, the mean of the unigram
and bigram F1 of lower-cased whitespace tokens, a cheap stand-in for DiffuSeq's BLEU-based MBR).
"""
from collections import Counter
from collections.abc import Mapping, Sequence

import numpy as np
import torch

from torch import nn

from pipeline.diffusion.config import SampleConfig
from pipeline.diffusion.inputs import collate, encode_rows
from pipeline.diffusion.sampler import decode, sample
from pipeline.diffusion.schedule import Schedule
from pipeline.diffusion.vocab import Vocab
from pipeline.metrics.diversity import ngrams
from pipeline.progress import progress


def eval_subset(example_ids: Sequence[str], n: int | None, seed: int) -> list[str]:
    """A fixed, seeded choice of n distinct example ids (all of them when n is None or >= their number), sorted.

    Depends only on the set of ids, n and seed, so every stage that calls it picks the same examples."""
    ids = sorted(set(example_ids))
    if n is None or n >= len(ids):
        return ids
    pick = np.random.default_rng(seed).choice(len(ids), size=n, replace=False)
    return sorted(ids[i] for i in pick)


def overlap(a: str, b: str) -> float:
    """Mean of the unigram and bigram multiset F1 of two texts (lower-cased, whitespace tokens), over the orders that
    either text has n-grams of; 1 for two empty texts."""
    ta, tb = a.lower().split(), b.lower().split()
    scores = []
    for n in (1, 2):
        x, y = Counter(ngrams(ta, n)), Counter(ngrams(tb, n))
        total = sum(x.values()) + sum(y.values())
        if total:
            scores.append(2 * sum((x & y).values()) / total)
    return sum(scores) / len(scores) if scores else 1.0


def mbr_pick(texts: Sequence[str]) -> int:
    """Index of the text with the highest mean `overlap` with the others (the first on ties; 0 for one text)."""
    if len(texts) < 2:
        return 0
    means = [sum(overlap(t, u) for j, u in enumerate(texts) if j != i) / (len(texts) - 1) for i, t in enumerate(texts)]
    return max(range(len(texts)), key=lambda i: (means[i], -i))


def generate(model: nn.Module, vocab: Vocab, rows: Sequence[Mapping], cfg: SampleConfig, seed: int,
             strength: float = 1.0) -> list[str]:
    """One generated response per control-source row (mappings with `context` and the CONTROL_FIELDS keys).

    cfg: the sampler's settings (SampleConfig): steps, clamp, temperature, num_samples draws per row reranked by
    cfg.rerank, batch_size. strength < 1 starts from each row's own response (`subword_ids`: the candidate's).
    Rows are batched by encoded length (less padding); the noise comes from one generator seeded with `seed`, so a
    rerun gives the same texts. -> texts in the order of `rows`.
    """
    device = next(model.parameters()).device
    examples = encode_rows(rows, vocab, model.cfg, gold=strength < 1)
    order = sorted(range(len(examples)), key=lambda i: len(examples[i]))
    schedule = Schedule(model.cfg.T, model.cfg.noise_offset)
    generator = torch.Generator(device).manual_seed(seed)
    draws = [[""] * len(rows) for _ in range(cfg.num_samples)]
    chunks = [order[i:i + cfg.batch_size] for i in range(0, len(order), cfg.batch_size)]
    for chunk in progress(chunks, desc="sample", every_s=30.0):
        batch = collate([examples[i] for i in chunk]).to(device)
        for texts in draws:
            ids = sample(model, batch, schedule, cfg.steps, cfg.clamp, generator, cfg.temperature, strength)
            for i, gen in zip(chunk, ids):
                texts[i] = decode(gen)
    if cfg.rerank == "none":
        return draws[0]
    return [draws[mbr_pick([d[i] for d in draws])][i] for i in range(len(rows))]
