"""Reverse diffusion of the response positions, then WordPiece ids; `sample` dispatches on the model's family.

Continuous: x_K ~ N(0, I) on the response positions (clean embeddings elsewhere; with a soft absorbing state m,
x_K ~ q(x_K | m)); at each step i = K..1 the model predicts x0, optionally clamped to the nearest output embedding
(Diffusion-LM), the solver takes x_i to x_{i-1} (`reverse_chain`: ancestral, x_{i-1} ~ q(x_{i-1} | x_i, x0); or
DPM-Solver++(2M), deterministic), and every non-response position is put back to its clean embedding. A
self-conditioned model also sees the previous step's x0 estimate (zeros at the first step). Only the current state is
kept (no trajectory). The last step gives x0 itself, which the tied rounding head turns into ids.

Masked (confidence-ordered unmasking, MaskGIT / MDLM): every response position starts hidden ([MASK]); at each of K
steps the model predicts a token for every hidden position and the most confident predictions are revealed, so that
after step k a share cos(pi/2 * k / K) of the positions is still hidden (none after step K). Revealed tokens are
kept. temperature 0 takes each position's most probable token; > 0 draws it with Gumbel noise at that temperature.

Classifier-free guidance (masked; `guidance` w != 1): every forward pass also reads `free`, the same rows with every
control level freed (inputs.free_levels), stacked under the batch into one forward, their response positions holding
the same tokens; the hidden positions are scored by log p_free + w (log p_given - log p_free), renormalised (w = 1:
the conditional model alone, no second pass). `guidance_start` runs the first share of the steps unguided.

Candidate initialisation (retrieve-and-edit, SDEdit-style; `strength` < 1): the response positions of the batch hold
a retrieved candidate's own WordPieces, and the chain starts from them part-way instead of from pure noise: the
continuous sampler from x_i = q(x_i | EMB(candidate)) at step i = ceil(strength x K), the masked one with each
candidate token hidden with probability `strength` (the rest kept). strength 1 is the sampler from noise, exactly.

Decoding stops at the first END.
"""
import math
import re
from collections.abc import Callable, Sequence

import torch

from pipeline.diffusion.inputs import Batch, stack
from pipeline.diffusion.mask import control_range_mask
from pipeline.diffusion.schedule import Generators, Schedule, hide, noise, randn_like
from pipeline.errors import PipelineError
from pipeline.models import wordpiece_tokenizer

SOLVERS = ("ancestral", "dpm++2m")  # the continuous family's reverse process (`reverse_chain`)


@torch.no_grad()
def sample(model: torch.nn.Module, batch: Batch, schedule: Schedule, steps: int | None = None, clamp: bool = False,
           generator: Generators = None, temperature: float = 0.0, strength: float = 1.0,
           bf16: bool = False, solver: str = "ancestral", guidance: float = 1.0, guidance_start: float = 0.0,
           free: Batch | None = None) -> list[list[int]]:
    """Generate the response positions of `batch` (already on the model's device) with the model's family sampler.

    schedule: the training schedule (T steps); steps: reverse steps (None = all T for the continuous family, one
    token per step for the masked one). clamp, solver (SOLVERS): continuous only; temperature: masked only.
    strength < 1: start from the candidate tokens that the batch holds at its response positions (module docstring).
    generator: the noise's source; a list of n generators when the batch stacks n draws of the same rows, draw-major
    (schedule.noise: draw j is then what a batch of draw j alone would give). bf16: run the model under bfloat16
    autocast (probabilities and the chain's state stay float32). guidance, guidance_start, free: classifier-free
    guidance (masked only; module docstring): `free` is `batch` with every level freed, row for row.
    -> per example, the generated WordPiece ids in order, up to (not including) the first END.
    """
    was_training = model.training
    model.eval()
    with torch.autocast(batch.ids.device.type, dtype=torch.bfloat16, enabled=bf16):
        if model.cfg.family == "masked":
            ids = unmask(model, batch, steps, temperature, generator, strength, guidance, guidance_start, free)
        elif guidance != 1:
            raise PipelineError("guidance is an option of the masked family's sampler: set sample.guidance to 1")
        else:
            ids = continuous(model, batch, schedule, steps, clamp, generator, strength, solver)
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


def continuous(model: torch.nn.Module, batch: Batch, schedule: Schedule, steps: int | None, clamp: bool,
               generator: Generators, strength: float = 1.0, solver: str = "ancestral") -> torch.Tensor:
    """Continuous family -> model ids [N] of all response positions, row-major (`reverse_chain` does the steps)."""
    if steps is not None and steps != len(schedule):
        schedule = schedule.respace(steps)
    cfg = model.cfg
    mask = control_range_mask(batch, cfg.mask, cfg.signals)  # [B, 1, L, L]
    is_resp = batch.is_response  # [B, L]
    resp = is_resp[..., None]  # [B, L, 1]
    clean = model.embed(batch.ids)  # [B, L, E]: the candidate's embeddings at the response positions, if any
    start = math.ceil(strength * len(schedule))
    if strength < 1 or cfg.soft_absorb:  # x_start ~ q(x_start | the candidate), or q(x_K | m) (soft absorbing state)
        origin = clean if strength < 1 else model.absorb.expand_as(clean)
        first = schedule.q_sample(origin, torch.full((len(batch),), start, device=clean.device),
                                  randn_like(clean, generator))
    else:
        first = randn_like(clean, generator)
    x = torch.where(resp, first, clean)
    x0 = torch.zeros_like(clean)  # the previous x0 estimate (self-conditioning), on the response positions only

    def denoise(x: torch.Tensor, step: torch.Tensor) -> torch.Tensor:
        nonlocal x0
        x0 = model(x, schedule.model_time(step), mask, x0, where=is_resp).float()  # float32 under bf16 autocast too
        if clamp:  # only the response positions: the others are put back by `keep` anyway
            x0[is_resp] = nearest_output(model, x0[is_resp])
        return x0

    x = reverse_chain(denoise, x, schedule, start, solver, generator, keep=lambda x: torch.where(resp, x, clean))
    return model.out_ids[model.logits(x[is_resp]).argmax(-1)]


def reverse_chain(denoise: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], x: torch.Tensor,
                  schedule: Schedule, start: int, solver: str, generator: Generators,
                  keep: Callable[[torch.Tensor], torch.Tensor] = lambda x: x) -> torch.Tensor:
    """Run the reverse process from x = x_start [B, L, E] (step `start` of `schedule`) to step 0 -> x_0 [B, L, E].

    denoise(x_i, step [B]) -> the x0 estimate [B, L, E]; keep(x) puts the positions that are never noised back.
    - ancestral: x_{i-1} ~ q(x_{i-1} | x_i, x0) (Diffusion-LM / DiffuSeq); the last step returns the mean, x0.
    - dpm++2m: DPM-Solver++(2M), deterministic (no noise after x_start): `Schedule.dpm_update` with the data estimate
      d = (1 + 1 / 2r) x0_i - (1 / 2r) x0_{i+1}, r = h_{i+1} / h_i (the previous step's); the first step and the
      last (to the clean data, h = inf) are first-order, d = x0_i.
    """
    if solver not in SOLVERS:
        raise PipelineError(f"unknown sample.solver {solver!r}: use one of {', '.join(SOLVERS)}")
    previous = None  # dpm++2m: the x0 estimate of the previous step
    for i in range(start, 0, -1):
        step = torch.full((len(x),), i, device=x.device)
        x0 = denoise(x, step)
        if solver == "ancestral":
            mean, var = schedule.posterior(x0, x, step)
            x = mean + var.sqrt() * randn_like(x, generator) if i > 1 else mean
        else:
            d = x0
            if previous is not None and i > 1:
                half_inv_r = float(schedule.dpm_h[i] / (2 * schedule.dpm_h[i + 1]))  # 1 / 2r
                d = (1 + half_inv_r) * x0 - half_inv_r * previous
            x, previous = schedule.dpm_update(x, d, step), x0
        x = keep(x)
    return x


def still_hidden(n: torch.Tensor, k: int, steps: int) -> torch.Tensor:
    """How many of n [B] positions stay hidden after unmasking step k of `steps` (cosine schedule; 0 after the last)."""
    return torch.floor(n * math.cos(math.pi / 2 * k / steps)).long() if k < steps else torch.zeros_like(n)


def guide(logp_given: torch.Tensor, logp_free: torch.Tensor, w: float) -> torch.Tensor:
    """Classifier-free guidance of log-probabilities [N, V]: log_softmax(lp_free + w (lp_given - lp_free))."""
    return torch.log_softmax(logp_free + w * (logp_given - logp_free), -1)


def unmask(model: torch.nn.Module, batch: Batch, steps: int | None, temperature: float, generators: Generators,
           strength: float = 1.0, guidance: float = 1.0, guidance_start: float = 0.0,
           free: Batch | None = None) -> torch.Tensor:
    """Masked family -> model ids [N] of all response positions, row-major.

    A row runs the model only at the steps where it reveals something (a row with fewer hidden positions than steps
    has steps that reveal nothing), and only its hidden positions are scored: what a row reveals depends on its own
    sequence alone, so skipping the rest changes no output. With guidance != 1 the rows of `free` (the same rows with
    every level freed) run in the same forward pass, below the batch's (module docstring).
    """
    cfg = model.cfg
    guided = guidance != 1
    if guided and (free is None or len(free) != len(batch)):
        raise PipelineError("guidance needs the batch's rows with every level freed (inputs.free_levels), row for row")
    B = len(batch)
    both = stack(batch, free) if guided else batch  # [2B or B, L]
    attn = control_range_mask(both, cfg.mask, cfg.signals)  # [2B or B, 1, L, L]
    is_resp = both.is_response[:B]  # [B, L]
    free_resp = both.is_response[B:]  # [B, L] (empty without guidance)
    if strength < 1:  # keep part of the candidate the batch holds
        ids, hidden = hide(batch, torch.full((B,), strength, device=batch.ids.device), model.mask_id, generators)
        ids = torch.nn.functional.pad(ids, (0, both.ids.shape[1] - ids.shape[1]))
        hidden = torch.nn.functional.pad(hidden, (0, both.ids.shape[1] - hidden.shape[1]))
    else:
        ids = torch.where(is_resp, torch.full_like(is_resp, model.mask_id, dtype=torch.long), both.ids[:B])  # [B, L]
        hidden = is_resp.clone()
    all_ids = both.ids.clone()  # [2B or B, L]: the guided rows' response positions follow the batch's
    n_resp = hidden.sum(1)  # [B]: the positions to generate
    steps = max(int(n_resp.max()), 1) if steps is None else steps
    draws = len(generators) if isinstance(generators, Sequence) else 1
    for k in range(1, steps + 1):
        reveal_n = hidden.sum(1) - still_hidden(n_resp, k, steps)  # [B]
        active = reveal_n > 0  # [B]: the rows that reveal something at this step
        if not active.any():
            continue
        scored = hidden & active[:, None]  # [B, L]: the hidden positions of the active rows
        guide_now = guided and k > guidance_start * steps
        all_ids[:B] = ids
        if guide_now:
            all_ids[B:][free_resp] = ids[is_resp]
            rows = torch.cat([active, active])  # [2B]
        else:
            rows = torch.cat([active, torch.zeros_like(active)]) if guided else active
        h = model(all_ids[rows], attn[rows])  # [A (x2), L, W]
        n_active = int(active.sum())
        logp = torch.log_softmax(model.logits(h[:n_active][scored[active]]).float(), -1)  # [N, V_out], row-major
        if guide_now:  # the same positions of the freed rows, in the same order
            free_scored = torch.zeros_like(free_resp)
            free_scored[free_resp] = scored[is_resp]
            logp_free = torch.log_softmax(model.logits(h[n_active:][free_scored[active]]).float(), -1)
            logp = guide(logp, logp_free, guidance)
        if temperature > 0:  # a Gumbel-max draw; each stacked draw's positions from its own generator
            parts = scored.view(draws, -1).sum(1).tolist()
            u = noise(logp.shape, generators, logp.device, normal=False, parts=parts).clamp(1e-20, 1.0)
            pick = (logp / temperature - torch.log(-torch.log(u))).argmax(-1)  # [N]
        else:
            pick = logp.argmax(-1)  # [N]
        choice = torch.zeros_like(ids)  # [B, L]
        choice[scored] = model.out_ids[pick]
        confidence = torch.full(ids.shape, -math.inf, device=ids.device)  # [B, L]
        confidence[scored] = logp.gather(-1, pick[:, None])[:, 0]
        rank = confidence.argsort(dim=-1, descending=True, stable=True).argsort(dim=-1)  # [B, L]: 0 = most confident
        reveal = scored & (rank < reveal_n[:, None])
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
