"""The training objectives of the two families, on the response positions only (context, separators and controls are
never noised or scored). `training_loss` dispatches on ModelConfig.family.

Continuous (paper Eq. 7, the DiffuSeq / Diffusion-LM variational bound, x0-parameterised), with e = EMB(w^y) the
response embeddings and y0 = e + sqrt(1 - alpha_bar_1) eps0 (Diffusion-LM's q(x0 | w)):
- mse:   ||y0 - f(x_t, t)||^2 for t >= 2 and ||e - f(x_1, 1)||^2 for t = 1 (the "embedding term"), t uniform in 1..K;
- prior: ||sqrt(alpha_bar_T) y0||^2, the mean of q(x_T | y0) against the N(0, I) prior: the regulariser R(||x0||^2);
- rounding (cfg.rounding): -log p(w^y | .) with the tied rounding head, scored on
  "embedding" (the default): y0, DiffuSeq's decoder NLL, the authors' objective; it guards against the embeddings
    collapsing (which the MSE alone would reward). With N(0, 1) embeddings the tied logits of y0 separate the gold
    token by a wide margin, so the term is ~0 and gives no gradient (the figures: docs/diffusion.md);
  "prediction": the model's x0 estimate f(x_t, t) (Difformer's anchor loss): sharper one-shot predictions, but it
    pulls f away from the MMSE estimate the reverse step needs, and sampling got worse (docs/diffusion.md);
  "none": Eq. 7 alone.
- ce (init minilm): the cross-entropy of the gold token under the head whose softmax gives x0_hat (CDCD / TESS);
  its argmax is then the `accuracy`.
With cfg.soft_absorb the noised point of a response position is the absorbing state m instead of y0 with probability
t / T (DiffuSeq-v2); every target stays the gold token's. t is drawn from the schedule's steps (cfg.t_min..T).
Self-conditioning (cfg.self_condition, Chen et al. 2023): the denoiser also sees an earlier x0 estimate, which the
sampler feeds from its previous step; training draws it from the model itself for half of the examples.
Every term is a mean over response positions (squared errors also averaged over the E dimensions).

Masked (absorbing-state discrete diffusion, MDLM / DiffusionBERT): with t uniform in 1..T, every response position
(END included) is hidden (its id replaced by [MASK]) independently with probability t / T; the loss is the
cross-entropy of the gold WordPiece at the hidden positions, averaged over them (the unweighted form; the ELBO's
1 / rate weight would put most of the weight on nearly clean sequences).
Both return `accuracy` (not trained): the share of scored response tokens whose argmax is the gold token.
"""
import torch
import torch.nn.functional as F

from pipeline.diffusion.inputs import Batch
from pipeline.diffusion.mask import control_range_mask
from pipeline.diffusion.model import DiffusEmpModel
from pipeline.diffusion.schedule import Schedule, hide, randn_like


def noise_response(x0: torch.Tensor, is_response: torch.Tensor, schedule: Schedule, step: torch.Tensor,
                   noise: torch.Tensor) -> torch.Tensor:
    """Partial noising: q_sample on the response positions, every other position of x0 unchanged (bit for bit).
    x0, noise [B, L, E]; is_response [B, L] bool; step [B] in 1..K -> x_t [B, L, E]."""
    return torch.where(is_response[..., None], schedule.q_sample(x0, step, noise), x0)


def training_loss(model: torch.nn.Module, batch: Batch, schedule: Schedule, t: torch.Tensor | None = None,
                  generator: torch.Generator | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Loss of one batch (already on the model's device). t: noise levels [B] in 1..len(schedule), uniform if None.
    model: a denoiser of either family, or a DistributedDataParallel wrapping one (the denoiser call goes through the
    wrapper). -> (scalar loss to backpropagate, detached terms: continuous {"mse", "prior", "ce" (init minilm),
    "rounding" (unless "none"), "loss", "accuracy"}, masked {"ce", "loss", "accuracy"})."""
    core = getattr(model, "module", model)
    draw_on = generator.device if generator is not None else "cpu"  # random draws happen on the generator's device
    if t is None:
        t = torch.randint(1, len(schedule) + 1, (len(batch),), generator=generator, device=draw_on)
    t = t.to(batch.ids.device)
    if core.cfg.family == "masked":
        return masked_loss(model, batch, t / len(schedule), generator)
    return continuous_loss(model, batch, schedule, t, generator)


def masked_loss(model: torch.nn.Module, batch: Batch, rate: torch.Tensor,
                generator: torch.Generator | None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Cross-entropy of the gold tokens at the positions hidden with probability rate [B]."""
    core = getattr(model, "module", model)
    ids, hidden = hide(batch, rate, core.mask_id, generator)
    h = model(ids, control_range_mask(batch, core.cfg.mask, core.cfg.signals))  # [B, L, W]
    gold = batch.target[hidden]  # [N] output-vocabulary index (-1 = not in it)
    logits = core.logits(h[hidden]).float()  # [N, V_out], float32 under bf16 autocast too
    known = (gold >= 0).sum()
    ce = F.cross_entropy(logits, gold, ignore_index=-1, reduction="sum") / known.clamp(min=1)
    accuracy = (logits.detach().argmax(-1) == gold).sum() / known.clamp(min=1)
    return ce, {"ce": ce.detach(), "loss": ce.detach(), "accuracy": accuracy}


def continuous_loss(model: torch.nn.Module, batch: Batch, schedule: Schedule, t: torch.Tensor,
                    generator: torch.Generator | None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Paper Eq. 7 (+ the rounding term of cfg.rounding) at the diffusion steps t [B]."""
    core: DiffusEmpModel = getattr(model, "module", model)
    cfg = core.cfg
    resp = batch.is_response  # [B, L]
    n = resp.sum().clamp(min=1)
    draw_on = generator.device if generator is not None else "cpu"
    e = core.embed(batch.ids)  # [B, L, E]
    y0 = torch.where(resp[..., None], e + schedule.data_sigma * randn_like(e, generator), e)  # [B, L, E]
    eps = randn_like(e, generator)
    time = schedule.model_time(t)  # [B]
    noised = y0
    if cfg.soft_absorb:  # DiffuSeq-v2: a response position starts from the absorbing state m with probability t / T
        u = torch.rand(resp.shape, generator=generator, device=draw_on).to(resp.device)  # [B, L]
        absorbed = resp & (u < (time / cfg.T)[:, None])
        noised = torch.where(absorbed[..., None], core.absorb.to(y0.dtype), y0)
    x_t = noise_response(noised, resp, schedule, t, eps)
    mask = control_range_mask(batch, cfg.mask, cfg.signals)  # [B, 1, L, L]
    x0_prev = None
    if cfg.self_condition:
        # Half of the examples first get the model's own estimate (no gradient) as the self-conditioning input, as
        # the sampler will feed them; the other half get zeros, as its first step does.
        use = (torch.rand(len(batch), generator=generator, device=draw_on) < 0.5).to(resp.device)  # [B]
        x0_prev = torch.zeros_like(e)
        if use.any():
            with torch.no_grad():
                x0_prev[use] = model(x_t[use], time[use], mask[use]) * resp[use][..., None]
    head = None  # init minilm: the cross-entropy head's logits [N, V_out] behind x0_hat
    if cfg.init == "minilm":
        x0_hat, head = model(x_t, time, mask, where=resp, return_logits=True)  # [B, L, E], [N, V_out]
    else:
        x0_hat = model(x_t, time, mask, x0_prev, where=resp)  # [B, L, E]

    target = torch.where((t == 1)[:, None, None], e, y0)  # Eq. 7: the t = 1 term targets EMB(w^y) itself
    mse = (((x0_hat - target) ** 2).mean(-1) * resp).sum() / n
    prior = ((float(schedule.alpha_bar[-1]) * y0 ** 2).mean(-1) * resp).sum() / n
    terms = {"mse": mse, "prior": prior}
    gold = batch.target[resp]  # [N] output-vocabulary index of each response position (-1 = not in it)
    known = (gold >= 0).sum().clamp(min=1)
    rounded = core.logits(x0_hat[resp]) if head is None or cfg.rounding == "prediction" else None  # [N, V_out]
    logits = rounded if head is None else head.float()  # [N, V_out]
    if head is not None:
        terms["ce"] = F.cross_entropy(logits, gold, ignore_index=-1, reduction="sum") / known
    if cfg.rounding != "none":
        scored = rounded if cfg.rounding == "prediction" else core.logits(y0[resp])
        terms["rounding"] = F.cross_entropy(scored, gold, ignore_index=-1, reduction="sum") / known
    loss = sum(terms.values())
    accuracy = (logits.detach().argmax(-1) == gold).sum() / known
    return loss, {**{k: v.detach() for k, v in terms.items()}, "loss": loss.detach(), "accuracy": accuracy}
