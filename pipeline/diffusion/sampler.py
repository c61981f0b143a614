"""Reverse diffusion: ancestral sampling of the response positions, then rounding to WordPiece ids.

x_K ~ N(0, I) on the response positions (clean embeddings elsewhere); at each step i = K..1 the model predicts x0,
optionally clamped to the nearest output embedding (Diffusion-LM), x_{i-1} ~ q(x_{i-1} | x_i, x0), and every
non-response position is put back to its clean embedding. A self-conditioned model also sees the previous step's x0
estimate (zeros at the first step). Only the current state is kept (no trajectory). The last
step's mean is x0 itself, which the tied rounding head turns into ids; decoding stops at the first END.
"""
import torch

from pipeline.diffusion.inputs import Batch
from pipeline.diffusion.losses import randn_like
from pipeline.diffusion.mask import control_range_mask
from pipeline.diffusion.model import DiffusEmpModel
from pipeline.diffusion.schedule import Schedule
from pipeline.models import wordpiece_tokenizer


def nearest_output(model: DiffusEmpModel, x0: torch.Tensor) -> torch.Tensor:
    """Each row of x0 [N, E] replaced by its nearest (L2) output-vocabulary embedding -> [N, E]."""
    emb = model.output_embeddings()  # [V_out, E]
    # argmin ||x - e||^2 = argmax (2 x.e - ||e||^2): one [N, V_out] score matrix, no per-token loop.
    return emb[(2 * model.logits(x0) - (emb ** 2).sum(-1)).argmax(-1)]


@torch.no_grad()
def sample(model: DiffusEmpModel, batch: Batch, schedule: Schedule, steps: int | None = None, clamp: bool = False,
           generator: torch.Generator | None = None) -> list[list[int]]:
    """Generate the response positions of `batch` (already on the model's device).

    schedule: the training schedule (T steps); steps: reverse steps, None or len(schedule) = full ancestral sampling,
    fewer = the respaced schedule. clamp: clamp the predicted x0 to the nearest output embedding at every step.
    -> per example, the generated WordPiece ids in order, up to (not including) the first END.
    """
    if steps is not None and steps != len(schedule):
        schedule = schedule.respace(steps)
    was_training = model.training
    model.eval()
    cfg = model.cfg
    mask = control_range_mask(batch, cfg.mask, cfg.signals)  # [B, 1, L, L]
    is_resp = batch.is_response  # [B, L]
    resp = is_resp[..., None]  # [B, L, 1]
    clean = model.embed(batch.ids)  # [B, L, E]
    x = torch.where(resp, randn_like(clean, generator), clean)
    x0 = torch.zeros_like(clean)  # the previous x0 estimate, on the response positions only
    for i in range(len(schedule), 0, -1):
        step = torch.full((len(batch),), i, device=x.device)
        x0 = model(x, schedule.model_time(step), mask, x0) * resp
        if clamp:  # only the response positions: the others are put back below anyway
            x0[is_resp] = nearest_output(model, x0[is_resp])
        mean, var = schedule.posterior(x0, x, step)
        x = mean + var.sqrt() * randn_like(x, generator) if i > 1 else mean
        x = torch.where(resp, x, clean)
    model.train(was_training)

    ids = model.out_ids[model.logits(x[is_resp]).argmax(-1)]  # [N] model ids of all response positions, row-major
    out = []
    for gen in ids.split(is_resp.sum(1).tolist()):
        gen = gen.tolist()
        out.append(gen[:gen.index(model.end_id)] if model.end_id in gen else gen)
    return out


def decode(ids: list[int]) -> str:
    """WordPiece ids -> text (BERT-uncased detokenisation, special tokens dropped)."""
    return wordpiece_tokenizer().decode(ids, skip_special_tokens=True)
