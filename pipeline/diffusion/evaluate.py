"""Held-out figures of a model's EMA weights on valid examples, all with fixed seeds and dropout off, so runs compare:

- held_out_loss: the training loss terms at uniformly drawn noise levels;
- accuracy_by_noise: one-shot accuracy (predict the clean tokens in a single step) in each quarter of t, where an
  under-trained model fails at the high-noise end (anchors.md section 7);
- held_out_sampling: what the sampler makes of the examples' own gold controls, token by token against the gold
  response, and the texts (for a fluency score), with one of DECODERS (`regenerate` does it for any weights).
Each takes the precision of the run it measures (bf16: bfloat16 autocast, as `train.bf16`).
"""
import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel

from pipeline.diffusion.ema import swapped_in
from pipeline.diffusion.inputs import Example, collate
from pipeline.diffusion.losses import training_loss
from pipeline.diffusion.sampler import decode, sample
from pipeline.diffusion.schedule import Schedule

QUARTERS = 4
# The held-out decoders, named by how deterministic they are, so that both families are judged alike (issue 24):
# sample()'s settings for each. deterministic: the masked family's most probable token, the continuous family's
# DPM-Solver++(2M) from a seeded x_T; sampled: Gumbel draws at temperature 1, the ancestral chain; clamped
# (continuous only): the authors' decoder, the ancestral chain with x0 snapped to the nearest embedding at every step.
DECODERS = {"deterministic": {"temperature": 0.0, "solver": "dpm++2m", "clamp": False},
            "sampled": {"temperature": 1.0, "solver": "ancestral", "clamp": False},
            "clamped": {"temperature": 1.0, "solver": "ancestral", "clamp": True}}


def _batches(examples: list[Example], batch_size: int, device):
    for i in range(0, len(examples), batch_size):
        yield collate(examples[i:i + batch_size]).to(device)


@torch.no_grad()
def held_out_loss(model: nn.Module, ema: AveragedModel, schedule: Schedule, examples: list[Example],
                  batch_size: int, seed: int, bf16: bool = False) -> dict:
    """Loss terms of the EMA weights on `examples` (noise levels and noise from a fixed seed).
    -> {"examples": n, term: mean over examples}"""
    device = next(model.parameters()).device
    generator = torch.Generator(device).manual_seed(seed)
    sums, n = {}, 0
    with swapped_in(model, ema), torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        for batch in _batches(examples, batch_size, device):
            _, terms = training_loss(model, batch, schedule, generator=generator)
            for k, v in terms.items():
                sums[k] = sums.get(k, 0.0) + float(v) * len(batch)
            n += len(batch)
    return {"examples": n, **{k: round(v / n, 6) for k, v in sums.items()}}


@torch.no_grad()
def accuracy_by_noise(model: nn.Module, ema: AveragedModel, schedule: Schedule, examples: list[Example],
                      batch_size: int, seed: int, bf16: bool = False) -> dict:
    """One-shot token accuracy of the EMA weights with t drawn uniformly within each quarter of 1..T.
    -> {"q1": accuracy for t in [1, T/4], ..., "q4": t in (3T/4, T]} (q4 is the noisiest quarter)."""
    device = next(model.parameters()).device
    K = len(schedule)
    out = {}
    with swapped_in(model, ema), torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        for q in range(QUARTERS):
            generator = torch.Generator(device).manual_seed(seed + q)
            lo, hi = q * K // QUARTERS + 1, (q + 1) * K // QUARTERS
            right, total = 0.0, 0
            for batch in _batches(examples, batch_size, device):
                t = torch.randint(lo, hi + 1, (len(batch),), generator=generator, device=device)
                _, terms = training_loss(model, batch, schedule, t=t, generator=generator)
                right, total = right + float(terms["accuracy"]) * len(batch), total + len(batch)
            out[f"q{q + 1}"] = round(right / max(total, 1), 4)
    return out


@torch.no_grad()
def held_out_sampling(model: nn.Module, ema: AveragedModel, schedule: Schedule, examples: list[Example],
                      batch_size: int, steps: int, seed: int, bf16: bool = False,
                      decoder: str = "deterministic") -> tuple[dict, list[str]]:
    """`regenerate` with the EMA weights."""
    with swapped_in(model, ema):
        return regenerate(model, schedule, examples, batch_size, steps, seed, bf16, decoder)


@torch.no_grad()
def regenerate(model: nn.Module, schedule: Schedule, examples: list[Example], batch_size: int, steps: int, seed: int,
               bf16: bool = False, decoder: str = "deterministic") -> tuple[dict, list[str]]:
    """How well the model regenerates held-out responses from their own (gold) controls (`regenerated`, summed up)
    -> ({"examples", "steps", "decoder", "token_accuracy": the per-example accuracies averaged, "exact": share
         regenerated exactly}, the generated texts)"""
    accuracy, texts = regenerated(model, schedule, examples, batch_size, steps, seed, bf16, decoder)
    n = len(accuracy)
    return {"examples": n, "steps": min(steps, len(schedule)), "decoder": decoder,
            "token_accuracy": round(sum(accuracy) / max(n, 1), 4),
            "exact": round(sum(a == 1.0 for a in accuracy) / max(n, 1), 4)}, texts


@torch.no_grad()
def regenerated(model: nn.Module, schedule: Schedule, examples: list[Example], batch_size: int, steps: int, seed: int,
                bf16: bool = False, decoder: str = "deterministic") -> tuple[list[float], list[str]]:
    """Each held-out response sampled from its gold controls with DECODERS[decoder] (`steps` reverse steps, at most
    T; noise from a fixed seed) and compared with the gold WordPieces position by position; a missing or extra token
    counts as wrong -> (per example: matches / max(len(gold), len(generated)), 1.0 only when regenerated exactly;
    the generated texts)."""
    device = next(model.parameters()).device
    generator = torch.Generator(device).manual_seed(seed)
    steps = min(steps, len(schedule))  # a small test profile may have fewer than `steps` diffusion steps
    accuracy, texts = [], []
    for batch in _batches(examples, batch_size, device):
        generated = sample(model, batch, schedule, steps, generator=generator, bf16=bf16, **DECODERS[decoder])
        gold = batch.ids[batch.is_response].split(batch.is_response.sum(1).tolist())  # the sampler hides these
        for gen, ref in zip(generated, gold):
            ref = ref[:-1].tolist()  # without END
            accuracy.append(sum(a == b for a, b in zip(gen, ref)) / max(len(gen), len(ref), 1))
            texts.append(decode(gen))
    return accuracy, texts
