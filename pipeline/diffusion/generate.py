"""Drawing responses from encoded control rows (inputs.encode_rows of rows with `context` and the CONTROL_FIELDS):
several seeded draws per row, batched by length; and which rows hold their whole response.

A control source is a row with the query's `context` and a candidate's CONTROL_FIELDS (candidates.parquet in retrieved
or oracle mode): the response takes the candidate's word and sentence structure (see inputs.encode_example). With
strength < 1 the candidate's own response is the starting point (sampler.py). Which draw is kept is decided above this
package (pipeline.rerank, pipeline.decoder).
"""
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import nn

from pipeline.diffusion.config import SampleConfig
from pipeline.diffusion.inputs import Example, Role, collate, free_levels
from pipeline.diffusion.sampler import decode, sample
from pipeline.diffusion.schedule import Schedule
from pipeline.precision import use_bf16
from pipeline.progress import progress


def complete(examples: Sequence[Example], rows: Sequence[Mapping]) -> np.ndarray:
    """Whether each encoded control row holds its row's whole response -> bool [rows]. A response too long for the
    model's max_len loses words from its end (inputs.encode_example), so its generations stop mid-way."""
    return np.array([sum(r == Role.RESPONSE for r in example.role) - 1 == len(row["subword_word"])  # minus END
                     for example, row in zip(examples, rows)])


def draw(model: nn.Module, examples: Sequence[Example], cfg: SampleConfig, seed: int,
         strength: float = 1.0) -> list[list[str]]:
    """cfg.num_samples generated responses per encoded control row (encode_rows with gold = strength < 1) -> texts
    [num_samples][rows], in the order of `examples`.

    cfg: the sampler's settings: steps, clamp, temperature, solver, bf16, batch_size, guidance (with guidance != 1
    each row is also read with every level freed, sampler.py). strength < 1 starts from each
    row's own response (the candidate's, which the examples hold). Rows are batched by encoded length (less padding),
    and every batch holds all the draws of its rows, draw-major. Draw j takes its noise from its own generator seeded
    with seed + j (sampler.sample): a rerun gives the same texts, and draw j is the same whatever num_samples is
    (num_samples 1 gives draw 0).
    """
    device = next(model.parameters()).device
    order = sorted(range(len(examples)), key=lambda i: len(examples[i]))
    schedule = Schedule.from_config(model.cfg)
    generators = [torch.Generator(device).manual_seed(seed + j) for j in range(cfg.num_samples)]
    bf16 = use_bf16(cfg.bf16, device)
    free = [free_levels(e, model.cfg.signals) for e in examples] if cfg.guidance != 1 else None
    draws = [[""] * len(examples) for _ in range(cfg.num_samples)]
    chunks = [order[i:i + cfg.batch_size] for i in range(0, len(order), cfg.batch_size)]
    for chunk in progress(chunks, desc="sample", every_s=30.0):
        batch = collate([examples[i] for i in chunk] * cfg.num_samples).to(device)  # [num_samples x rows, L]
        freed = collate([free[i] for i in chunk] * cfg.num_samples).to(device) if free else None
        ids = sample(model, batch, schedule, cfg.steps, cfg.clamp, generators, cfg.temperature, strength, bf16,
                     cfg.solver, cfg.guidance, cfg.guidance_start, freed)
        for j, texts in enumerate(draws):
            for i, gen in zip(chunk, ids[j * len(chunk):(j + 1) * len(chunk)]):
                texts[i] = decode(gen)
    return draws
