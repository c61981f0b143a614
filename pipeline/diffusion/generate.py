"""Generation from control sources: the test subset every system is scored on, and batched sampling of responses.

A control source is a row with the query's `context` and a candidate's CONTROL_FIELDS (candidates.parquet in retrieved
or oracle mode): the response takes the candidate's word and sentence structure (see inputs.encode_example).
"""
from collections.abc import Mapping, Sequence

import numpy as np
import torch

from pipeline.diffusion.inputs import collate
from pipeline.diffusion.model import DiffusEmpModel
from pipeline.diffusion.sampler import decode, sample
from pipeline.diffusion.schedule import Schedule
from pipeline.diffusion.trainer import encode_rows
from pipeline.diffusion.vocab import Vocab
from pipeline.progress import progress


def eval_subset(example_ids: Sequence[str], n: int | None, seed: int) -> list[str]:
    """A fixed, seeded choice of n distinct example ids (all of them when n is None or >= their number), sorted.

    Depends only on the set of ids, n and seed, so every stage that calls it picks the same examples."""
    ids = sorted(set(example_ids))
    if n is None or n >= len(ids):
        return ids
    pick = np.random.default_rng(seed).choice(len(ids), size=n, replace=False)
    return sorted(ids[i] for i in pick)


def generate(model: DiffusEmpModel, vocab: Vocab, rows: Sequence[Mapping], steps: int | None, clamp: bool,
             batch_size: int, seed: int) -> list[str]:
    """One generated response per control-source row (mappings with `context` and the CONTROL_FIELDS keys).

    steps: reverse steps (None = the full T-step ancestral sampler, fewer = respaced). Rows are batched by encoded
    length (less padding); the noise comes from one generator seeded with `seed`, so a rerun gives the same texts.
    -> texts in the order of `rows`.
    """
    device = next(model.parameters()).device
    examples = encode_rows(rows, vocab, model.cfg, gold=False)
    order = sorted(range(len(examples)), key=lambda i: len(examples[i]))
    schedule = Schedule(model.cfg.T, model.cfg.noise_offset)
    generator = torch.Generator(device).manual_seed(seed)
    texts = [""] * len(rows)
    chunks = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    for chunk in progress(chunks, desc="sample", every_s=30.0):
        ids = sample(model, collate([examples[i] for i in chunk]).to(device), schedule, steps, clamp, generator)
        for i, gen in zip(chunk, ids):
            texts[i] = decode(gen)
    return texts
