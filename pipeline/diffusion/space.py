"""How far into the chain a diffusion space stays decodable with no model at all (issue 24's diagnostic).

At step t the continuous family sees x_t = sqrt(alpha_bar_t) e + sqrt(1 - alpha_bar_t) eps. The model-free decoder
takes the token of highest likelihood, argmin_v ||x_t - sqrt(alpha_bar_t) e_v||^2 over the output vocabulary, and
`rounding_accuracy` is the share of tokens it gets back. Where the share is ~1 the denoiser has nothing to learn;
where it is ~0, everything: uniform t spends training where the curve is flat, and a space whose curve falls only
near t = T (or at t ~ 0) wastes most of its steps; a noise factor or a clipped t moves or skips the flat part.
"""
from collections.abc import Sequence

import torch

from pipeline.diffusion.schedule import Schedule


@torch.no_grad()
def rounding_accuracy(embeddings: torch.Tensor, tokens: torch.Tensor, schedule: Schedule, steps: Sequence[int],
                      seed: int = 0, chunk: int = 2048) -> dict[int, float]:
    """embeddings [V, E]: the points tokens are rounded to (a model's output embeddings); tokens [N]: indices into
    them, drawn as the data draws them (frequent tokens often); steps: steps of `schedule` (1..K) -> {step: the share
    of the N tokens whose noised embedding the model-free decoder maps back to them}."""
    e = embeddings.float()
    norms = (e ** 2).sum(-1)  # [V]
    generator = torch.Generator().manual_seed(seed)
    out = {}
    for step in steps:
        a = float(schedule.alpha_bar[step])
        right = 0
        for part in tokens.split(chunk):
            clean = e[part]  # [n, E]
            x = a ** 0.5 * clean + (1 - a) ** 0.5 * torch.randn(clean.shape, generator=generator)
            # argmin_v ||x - sqrt(a) e_v||^2 = argmax_v (2 sqrt(a) x . e_v - a ||e_v||^2)
            right += int(((2 * a ** 0.5 * x @ e.T - a * norms).argmax(-1) == part).sum())
        out[int(step)] = right / max(len(tokens), 1)
    return out
