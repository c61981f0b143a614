"""Reverse diffusion of the response positions, then WordPiece ids; `sample` dispatches on the model's family.

Continuous (ancestral): x_K ~ N(0, I) on the response positions (clean embeddings elsewhere); at each step i = K..1
the model predicts x0, optionally clamped to the nearest output embedding (Diffusion-LM), x_{i-1} ~ q(x_{i-1} | x_i,
x0), and every non-response position is put back to its clean embedding. A self-conditioned model also sees the
previous step's x0 estimate (zeros at the first step). Only the current state is kept (no trajectory). The last
step's mean is x0 itself, which the tied rounding head turns into ids.

Masked (confidence-ordered unmasking, MaskGIT / MDLM): every response position starts hidden ([MASK]); at each of K
steps the model predicts a token for every hidden position and the most confident predictions are revealed, so that
after step k a share cos(pi/2 * k / K) of the positions is still hidden (none after step K). Revealed tokens are
kept. temperature 0 takes each position's most probable token; > 0 draws it with Gumbel noise at that temperature.

Candidate initialisation (retrieve-and-edit, SDEdit-style; `strength` < 1): the response positions of the batch hold
a retrieved candidate's own WordPieces, and the chain starts from them part-way instead of from pure noise: the
continuous sampler from x_i = q(x_i | EMB(candidate)) at step i = ceil(strength x K), the masked one with each
candidate token hidden with probability `strength` (the rest kept). strength 1 is the sampler from noise, exactly.

Decoding stops at the first END.
"""
import math
import re

import torch

from pipeline.diffusion.inputs import Batch
from pipeline.diffusion.mask import control_range_mask
from pipeline.diffusion.schedule import Schedule, hide, randn_like
from pipeline.errors import PipelineError
from pipeline.models import wordpiece_tokenizer


@torch.no_grad()
def sample(model: torch.nn.Module, batch: Batch, schedule: Schedule, steps: int | None = None, clamp: bool = False,
           generator: torch.Generator | None = None, temperature: float = 0.0,
           strength: float = 1.0) -> list[list[int]]:
    """Generate the response positions of `batch` (already on the model's device) with the model's family sampler.

    schedule: the training schedule (T steps); steps: reverse steps (None = all T for the continuous family, one
    token per step for the masked one). clamp: continuous only; temperature: masked only. strength < 1: start from
    the candidate tokens that the batch holds at its response positions (module docstring).
    -> per example, the generated WordPiece ids in order, up to (not including) the first END.
    """
    if not 0 < strength <= 1:
        raise PipelineError(f"init strength {strength} is not in (0, 1]: fix sample.edit_strength / --strength")
    was_training = model.training
    model.eval()
    if model.cfg.family == "masked":
        ids = unmask(model, batch, steps, temperature, generator, strength)
    else:
        ids = ancestral(model, batch, schedule, steps, clamp, generator, strength)
    model.train(was_training)
    out = []
    for gen in ids.split(batch.is_response.sum(1).tolist()):
        gen = gen.tolist()
        out.append(gen[:gen.index(model.end_id)] if model.end_id in gen else gen)
    return out


def nearest_output(model: torch.nn.Module, x0: torch.Tensor) -> torch.Tensor:
    """Each row of x0 [N, E] replaced by its nearest (L2) output-vocabulary embedding -> [N, E]."""
    emb = model.output_embeddings()  # [V_out, E]
    # argmin ||x - e||^2 = argmax (2 x.e - ||e||^2): one [N, V_out] score matrix, no per-token loop.
    return emb[(2 * model.logits(x0) - (emb ** 2).sum(-1)).argmax(-1)]


def ancestral(model: torch.nn.Module, batch: Batch, schedule: Schedule, steps: int | None, clamp: bool,
              generator: torch.Generator | None, strength: float = 1.0) -> torch.Tensor:
    """Continuous family -> model ids [N] of all response positions, row-major."""
    if steps is not None and steps != len(schedule):
        schedule = schedule.respace(steps)
    cfg = model.cfg
    mask = control_range_mask(batch, cfg.mask, cfg.signals)  # [B, 1, L, L]
    is_resp = batch.is_response  # [B, L]
    resp = is_resp[..., None]  # [B, L, 1]
    clean = model.embed(batch.ids)  # [B, L, E]: the candidate's embeddings at the response positions, if any
    start = math.ceil(strength * len(schedule))
    if strength < 1:
        noised = schedule.q_sample(clean, torch.full((len(batch),), start, device=clean.device), randn_like(clean,
                                                                                                         generator))
        x = torch.where(resp, noised, clean)
    else:
        x = torch.where(resp, randn_like(clean, generator), clean)
    x0 = torch.zeros_like(clean)  # the previous x0 estimate, on the response positions only
    for i in range(start, 0, -1):
        step = torch.full((len(batch),), i, device=x.device)
        x0 = model(x, schedule.model_time(step), mask, x0) * resp
        if clamp:  # only the response positions: the others are put back below anyway
            x0[is_resp] = nearest_output(model, x0[is_resp])
        mean, var = schedule.posterior(x0, x, step)
        x = mean + var.sqrt() * randn_like(x, generator) if i > 1 else mean
        x = torch.where(resp, x, clean)
    return model.out_ids[model.logits(x[is_resp]).argmax(-1)]


def still_hidden(n: torch.Tensor, k: int, steps: int) -> torch.Tensor:
    """How many of n [B] positions stay hidden after unmasking step k of `steps` (cosine schedule; 0 after the last)."""
    return torch.floor(n * math.cos(math.pi / 2 * k / steps)).long() if k < steps else torch.zeros_like(n)


def unmask(model: torch.nn.Module, batch: Batch, steps: int | None, temperature: float,
           generator: torch.Generator | None, strength: float = 1.0) -> torch.Tensor:
    """Masked family -> model ids [N] of all response positions, row-major."""
    cfg = model.cfg
    attn = control_range_mask(batch, cfg.mask, cfg.signals)  # [B, 1, L, L]
    is_resp = batch.is_response  # [B, L]
    if strength < 1:  # keep part of the candidate the batch holds
        ids, hidden = hide(batch, torch.full((len(batch),), strength, device=batch.ids.device), model.mask_id,
                           generator)
    else:
        ids = torch.where(is_resp, torch.full_like(batch.ids, model.mask_id), batch.ids)  # [B, L]
        hidden = is_resp.clone()
    n_resp = hidden.sum(1)  # [B]: the positions to generate
    steps = max(int(n_resp.max()), 1) if steps is None else steps
    for k in range(1, steps + 1):
        logp = torch.log_softmax(model.logits(model(ids, attn)[is_resp]).float(), -1)  # [N, V_out]
        if temperature > 0:
            draw_on = generator.device if generator is not None else logp.device
            u = torch.rand(logp.shape, generator=generator, device=draw_on).to(logp.device).clamp(1e-20, 1.0)
            pick = (logp / temperature - torch.log(-torch.log(u))).argmax(-1)  # [N]: a Gumbel-max draw
        else:
            pick = logp.argmax(-1)  # [N]
        choice = torch.zeros_like(ids)  # [B, L]
        choice[is_resp] = model.out_ids[pick]
        confidence = torch.full(ids.shape, -math.inf, device=ids.device)  # [B, L]
        confidence[is_resp] = logp.gather(-1, pick[:, None])[:, 0]
        confidence = confidence.masked_fill(~hidden, -math.inf)
        reveal_n = hidden.sum(1) - still_hidden(n_resp, k, steps)  # [B]
        rank = confidence.argsort(dim=-1, descending=True, stable=True).argsort(dim=-1)  # [B, L]: 0 = most confident
        reveal = hidden & (rank < reveal_n[:, None])
        ids = torch.where(reveal, choice, ids)
        hidden &= ~reveal
    return ids[is_resp]


# BERT's decoder leaves spaces that WordPiece put around apostrophes, decimal points and brackets: "don ' t", "2. 5".
CONTRACTION = re.compile(r"(\w) ' (s|m|t|re|ve|ll|d|all)\b")
# The model sometimes spells "don't" as the WordPieces do, n, ', t ("do n't"): join the negation to its verb.
SPLIT_NEGATION = re.compile(r"\b(\w+) n't\b")
DECIMAL = re.compile(r"(\d)\. (\d)")
BRACKETS = re.compile(r"([(\[]) | ([)\]])")


def decode(ids: list[int]) -> str:
    """WordPiece ids -> text: BERT-uncased detokenisation (special tokens dropped), then contractions, decimals and
    brackets closed up ("i ' m" -> "i'm", "do n ' t" -> "don't", "2. 5" -> "2.5", "( a )" -> "(a)")."""
    text = wordpiece_tokenizer().decode(ids, skip_special_tokens=True)
    text = SPLIT_NEGATION.sub(r"\1n't", CONTRACTION.sub(r"\1'\2", text))
    return BRACKETS.sub(r"\1\2", DECIMAL.sub(r"\1.\2", text))
