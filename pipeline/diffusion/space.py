"""How far into the chain a diffusion space stays decodable with no model at all (issue 24's diagnostic).

At step t the continuous family sees x_t = sqrt(alpha_bar_t) e + sqrt(1 - alpha_bar_t) eps. The model-free decoder
takes the token of highest likelihood, argmin_v ||x_t - sqrt(alpha_bar_t) e_v||^2 over the output vocabulary, and
`rounding_accuracy` is the share of tokens it gets back. Where the share is ~1 the denoiser has nothing to learn;
where it is ~0, everything: uniform t spends training where the curve is flat, and a space whose curve falls only
near t = T (or at t ~ 0) wastes most of its steps; a noise factor or a clipped t moves or skips the flat part.

`norm_by_frequency` shows how a trained space has moved: the mean norm of the embedding rows of tokens that are
frequent, rare or absent in the training responses (a row that is never a target keeps its initial norm, and a
bias-free dot-product rounding favours long rows).
"""
from collections.abc import Sequence

import torch

from pipeline.diffusion.schedule import Schedule, log_likelihood


@torch.no_grad()
def rounding_accuracy(embeddings: torch.Tensor, tokens: torch.Tensor, schedule: Schedule, steps: Sequence[int],
                      seed: int = 0, chunk: int = 2048) -> dict[int, float]:
    """embeddings [V, E]: the points tokens are rounded to (a model's output embeddings); tokens [N]: indices into
    them, drawn as the data draws them (frequent tokens often); steps: steps of `schedule` (1..K) -> {step: the share
    of the N tokens whose noised embedding the model-free decoder maps back to them}."""
    e = embeddings.float()
    generator = torch.Generator().manual_seed(seed)
    out = {}
    for step in steps:
        a = float(schedule.alpha_bar[step])
        right = 0
        for part in tokens.split(chunk):
            clean = e[part]  # [n, E]
            x = a ** 0.5 * clean + (1 - a) ** 0.5 * torch.randn(clean.shape, generator=generator)
            right += int((log_likelihood(x, e, a).argmax(-1) == part).sum())  # argmin_v ||x - sqrt(a) e_v||^2
        out[int(step)] = right / max(len(tokens), 1)
    return out


FREQUENCY_BINS = (0, 1, 10, 100, 1000, 10000)  # lower edges of the count bins of `norm_by_frequency`


@torch.no_grad()
def norm_by_frequency(embeddings: torch.Tensor, counts: torch.Tensor) -> list[dict]:
    """embeddings [V, E]; counts [V]: how often each token is a training target -> one dict per non-empty bin of
    FREQUENCY_BINS, {"counts": "lo-hi" (hi exclusive; "lo+" for the last), "tokens", "mean_norm", "std_norm"}."""
    norms = embeddings.float().norm(dim=-1)  # [V]
    edges = [*FREQUENCY_BINS, None]
    out = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        inside = (counts >= lo) & (counts < hi) if hi is not None else counts >= lo
        if inside.any():
            part = norms[inside]
            out.append({"counts": f"{lo}-{hi}" if hi is not None else f"{lo}+", "tokens": int(inside.sum()),
                        "mean_norm": round(float(part.mean()), 3),
                        "std_norm": round(float(part.std()), 3) if len(part) > 1 else 0.0})
    return out
