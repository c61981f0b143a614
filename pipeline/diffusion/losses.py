"""The training objective: paper Eq. 7 (the DiffuSeq / Diffusion-LM variational bound, x0-parameterised) on the
response positions only, plus the rounding cross-entropy as an option (cfg.rounding_loss).

With e = EMB(w^y) the response embeddings and y0 = e + sqrt(1 - alpha_bar_1) eps0 (Diffusion-LM's q(x0 | w)):
- mse:   ||y0 - f(x_t, t)||^2 for t >= 2 and ||e - f(x_1, 1)||^2 for t = 1 (the "embedding term"), t uniform in 1..K;
- prior: ||sqrt(alpha_bar_T) y0||^2, the mean of q(x_T | y0) against the N(0, I) prior: the regulariser R(||x0||^2);
- rounding (option): -log p(w^y | y0) with the tied rounding head; it keeps the embeddings apart (without it nothing
  stops them collapsing towards each other, which the MSE would reward).
Every term is a mean over response positions (squared errors also averaged over the E dimensions). Context, separator
and control positions are never noised: the model sees their clean embeddings.
"""
import torch
import torch.nn.functional as F

from pipeline.diffusion.inputs import Batch
from pipeline.diffusion.mask import control_range_mask
from pipeline.diffusion.model import DiffusEmpModel
from pipeline.diffusion.schedule import Schedule


def randn_like(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Standard normal noise shaped like x, drawn from `generator` (on its own device) when given."""
    if generator is None:
        return torch.randn_like(x)
    return torch.randn(x.shape, generator=generator, device=generator.device, dtype=x.dtype).to(x.device)


def noise_response(x0: torch.Tensor, is_response: torch.Tensor, schedule: Schedule, step: torch.Tensor,
                   noise: torch.Tensor) -> torch.Tensor:
    """Partial noising: q_sample on the response positions, every other position of x0 unchanged (bit for bit).
    x0, noise [B, L, E]; is_response [B, L] bool; step [B] in 1..K -> x_t [B, L, E]."""
    return torch.where(is_response[..., None], schedule.q_sample(x0, step, noise), x0)


def training_loss(model: torch.nn.Module, batch: Batch, schedule: Schedule, t: torch.Tensor | None = None,
                  generator: torch.Generator | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Loss of one batch (already on the model's device). t: steps [B] in 1..len(schedule), uniform if None.
    model: a DiffusEmpModel, or a DistributedDataParallel wrapping one (the denoiser call goes through the wrapper).
    -> (scalar loss to backpropagate, detached terms {"mse", "prior", "rounding" (if enabled), "loss"})."""
    core: DiffusEmpModel = getattr(model, "module", model)
    cfg = core.cfg
    resp = batch.is_response  # [B, L]
    n = resp.sum().clamp(min=1)
    if t is None:
        t = torch.randint(1, len(schedule) + 1, (len(batch),), generator=generator,
                          device=generator.device if generator is not None else "cpu").to(resp.device)
    e = core.embed(batch.ids)  # [B, L, E]
    sigma0 = float((1 - schedule.alpha_bar[1]).sqrt())
    y0 = torch.where(resp[..., None], e + sigma0 * randn_like(e, generator), e)  # [B, L, E]
    x_t = noise_response(y0, resp, schedule, t, randn_like(e, generator))
    x0_hat = model(x_t, schedule.model_time(t), control_range_mask(batch, cfg.mask, cfg.signals))  # [B, L, E]

    target = torch.where((t == 1)[:, None, None], e, y0)  # Eq. 7: the t = 1 term targets EMB(w^y) itself
    mse = (((x0_hat - target) ** 2).mean(-1) * resp).sum() / n
    prior = ((float(schedule.alpha_bar[-1]) * y0 ** 2).mean(-1) * resp).sum() / n
    terms = {"mse": mse, "prior": prior}
    if cfg.rounding_loss:
        # [N, V_out] logits of the response positions only, against their output-vocabulary index (-1 = ignore).
        gold = batch.target[resp]  # [N]
        ce = F.cross_entropy(core.logits(y0[resp]), gold, ignore_index=-1, reduction="sum")
        terms["rounding"] = ce / (gold >= 0).sum().clamp(min=1)
    loss = sum(terms.values())
    return loss, {**{k: v.detach() for k, v in terms.items()}, "loss": loss.detach()}
